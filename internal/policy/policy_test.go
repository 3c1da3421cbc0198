package policy

import (
	"errors"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/identity"
)

func TestAuthorize(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fresh := now.Add(-2 * time.Minute)
	stale := now.Add(-11 * time.Minute)

	alice := &identity.Principal{Subject: "alice", Owner: "alice", Role: identity.RoleUser, AMR: []string{"pwd"}, AuthTime: fresh}
	aliceMFA := &identity.Principal{Subject: "alice", Owner: "alice", Role: identity.RoleUser, AMR: []string{"pwd", "otp"}, AuthTime: fresh}
	aliceMFAStale := &identity.Principal{Subject: "alice", Owner: "alice", Role: identity.RoleUser, AMR: []string{"pwd", "otp"}, AuthTime: stale}
	aliceRecovery := &identity.Principal{Subject: "alice", Owner: "alice", Role: identity.RoleUser, AMR: []string{"pwd", "mfa"}, AuthTime: fresh}
	aliceFuture := &identity.Principal{Subject: "alice", Owner: "alice", Role: identity.RoleUser, AMR: []string{"pwd", "otp"}, AuthTime: now.Add(time.Hour)}
	bob := &identity.Principal{Subject: "bob", Owner: "bob", Role: identity.RoleUser, AMR: []string{"pwd"}, AuthTime: fresh}
	admin := &identity.Principal{Subject: "root", Owner: "root", Role: identity.RoleAdmin, AMR: []string{"root"}, AuthTime: fresh}
	adminMFA := &identity.Principal{Subject: "carol", Owner: "carol", Role: identity.RoleAdmin, AMR: []string{"pwd", "otp"}, AuthTime: fresh}
	adminMFAStale := &identity.Principal{Subject: "carol", Owner: "carol", Role: identity.RoleAdmin, AMR: []string{"pwd", "otp"}, AuthTime: stale}
	adminPwd := &identity.Principal{Subject: "dave", Owner: "dave", Role: identity.RoleAdmin, AMR: []string{"pwd"}, AuthTime: fresh}
	rootStale := &identity.Principal{Subject: "root", Owner: "root", Role: identity.RoleAdmin, AMR: []string{"root"}, AuthTime: stale}
	userNamedRoot := &identity.Principal{Subject: "mallory", Owner: "mallory", Role: identity.RoleUser, AMR: []string{"root"}, AuthTime: fresh}
	empty := &identity.Principal{}
	key := func(actions, accounts []string) *identity.Principal {
		return &identity.Principal{Subject: "apikey:k1", APIKeyID: "k1", Owner: "alice", Role: identity.RoleUser, Actions: actions, Accounts: accounts}
	}
	keyAll := key([]string{"*"}, []string{"*"})
	keySignHot := key([]string{"account.sign"}, []string{"hot"})
	keyImport := key([]string{"account.import", "account.delete"}, []string{"*"})
	keyAdminish := key([]string{"user.manage", "sys", "apikey.create", "session.manage", "mfa.disable", "apikey.manage", "account.grant"}, []string{"*"})
	keyNoOwner := &identity.Principal{Subject: "apikey:k2", APIKeyID: "k2", Actions: []string{"*"}, Accounts: []string{"*"}}

	aliceHot := &Resource{Owner: "alice", Name: "hot"}
	aliceCold := &Resource{Owner: "alice", Name: "cold"}
	bobShared := &Resource{Owner: "bob", Name: "shared", Grants: []string{"alice"}}
	bobPrivate := &Resource{Owner: "bob", Name: "private"}
	ofAlice := &Resource{Owner: "alice"}
	ofBob := &Resource{Owner: "bob"}

	def := Rules{}
	quorum := Rules{Quorum: true}
	signMFA := Rules{SignRequiresMFA: true}
	short := Rules{StepUpMaxAge: time.Minute}

	tests := []struct {
		name  string
		rules Rules
		p     *identity.Principal
		a     Action
		res   *Resource
		want  error
	}{
		{"nil principal", def, nil, ActionAccountRead, aliceHot, ErrDenied},
		{"empty principal", def, empty, ActionAccountRead, &Resource{}, ErrDenied},
		{"unknown action", def, alice, Action("account.steal"), aliceHot, ErrDenied},
		{"empty action", def, admin, Action(""), nil, ErrDenied},

		// ownership
		{"owner reads", def, alice, ActionAccountRead, aliceHot, nil},
		{"owner signs", def, alice, ActionSign, aliceHot, nil},
		{"owner lists", def, alice, ActionAccountRead, nil, nil},
		{"sign without resource", def, alice, ActionSign, nil, ErrDenied},
		{"owner creates", def, alice, ActionAccountCreate, nil, nil},
		{"owner creates named", def, alice, ActionAccountCreate, aliceHot, nil},
		{"create for someone else", def, alice, ActionAccountCreate, bobPrivate, ErrDenied},
		{"other user reads", def, bob, ActionAccountRead, aliceHot, ErrDenied},
		{"other user signs", def, bob, ActionSign, aliceHot, ErrDenied},
		{"other user deletes", def, bob, ActionAccountDelete, aliceHot, ErrDenied},
		{"other user grants", def, bob, ActionAccountGrant, aliceHot, ErrDenied},
		{"owner grants without step-up", def, alice, ActionAccountGrant, aliceHot, ErrStepUpRequired},
		{"owner grants after step-up", def, aliceMFA, ActionAccountGrant, aliceHot, nil},
		{"owner grants with stale MFA", def, aliceMFAStale, ActionAccountGrant, aliceHot, ErrStepUpRequired},
		{"owner withdraws a grant without step-up", def, alice, ActionAccountUngrant, aliceHot, nil},
		{"other user withdraws a grant", def, bob, ActionAccountUngrant, aliceHot, ErrDenied},
		{"grant without resource", def, alice, ActionAccountGrant, nil, ErrDenied},

		// grants
		{"grantee reads", def, alice, ActionAccountRead, bobShared, nil},
		{"grantee signs", def, alice, ActionSign, bobShared, nil},
		{"grantee cannot delete", def, aliceMFA, ActionAccountDelete, bobShared, ErrDenied},
		{"grantee cannot re-grant", def, alice, ActionAccountGrant, bobShared, ErrDenied},
		{"not granted", def, alice, ActionSign, bobPrivate, ErrDenied},

		// admins do not touch other users' accounts
		{"admin reads other account", def, admin, ActionAccountRead, aliceHot, ErrDenied},
		{"admin signs other account", def, adminMFA, ActionSign, aliceHot, ErrDenied},
		{"admin deletes other account", def, adminMFA, ActionAccountDelete, aliceHot, ErrDenied},
		{"admin manages users", def, admin, ActionUserManage, nil, nil},
		{"admin sys", def, admin, ActionSysAdmin, nil, nil},
		{"admin manages others sessions", def, admin, ActionSessionManage, ofAlice, nil},
		{"admin revokes others keys", def, admin, ActionAPIKeyManage, ofAlice, nil},
		{"admin cannot create key for other", def, adminMFA, ActionAPIKeyCreate, ofAlice, ErrDenied},
		{"admin resets others MFA with step-up", def, adminMFA, ActionMFADisable, ofAlice, nil},
		{"admin resets others MFA without step-up", def, admin, ActionMFADisable, ofAlice, ErrStepUpRequired},
		{"user cannot manage users", def, alice, ActionUserManage, nil, ErrDenied},
		{"user cannot sys", def, aliceMFA, ActionSysAdmin, nil, ErrDenied},
		{"admin writes policies with step-up", def, adminMFA, ActionPolicyWrite, nil, nil},
		{"admin writes policies without step-up", def, admin, ActionPolicyWrite, nil, ErrStepUpRequired},
		{"user cannot write policies", def, aliceMFA, ActionPolicyWrite, nil, ErrDenied},
		{"user own sessions", def, alice, ActionSessionManage, ofAlice, nil},
		{"nil resource is not self", def, alice, ActionSessionManage, nil, ErrDenied},
		{"user others sessions", def, alice, ActionSessionManage, ofBob, ErrDenied},
		{"user own keys", def, alice, ActionAPIKeyManage, ofAlice, nil},
		{"user others keys", def, alice, ActionAPIKeyManage, ofBob, ErrDenied},
		{"user disables others MFA", def, aliceMFA, ActionMFADisable, ofBob, ErrDenied},
		{"admin resets a password with step-up", def, adminMFA, ActionPasswordReset, ofAlice, nil},
		{"admin resets a password without step-up", def, admin, ActionPasswordReset, ofAlice, ErrStepUpRequired},
		{"user resets a password", def, aliceMFA, ActionPasswordReset, ofBob, ErrDenied},
		{"key resets a password", def, keyAdminish, ActionPasswordReset, ofBob, ErrDenied},

		// step-up
		{"import needs MFA", def, alice, ActionAccountImport, nil, ErrStepUpRequired},
		{"import with MFA", def, aliceMFA, ActionAccountImport, nil, nil},
		{"import stale MFA", def, aliceMFAStale, ActionAccountImport, nil, ErrStepUpRequired},
		{"import recovery code counts as MFA", def, aliceRecovery, ActionAccountImport, nil, nil},
		{"future auth_time untrusted", def, aliceFuture, ActionAccountImport, nil, ErrStepUpRequired},
		{"delete needs MFA", def, alice, ActionAccountDelete, aliceHot, ErrStepUpRequired},
		{"delete with MFA", def, aliceMFA, ActionAccountDelete, aliceHot, nil},
		{"create key needs MFA", def, alice, ActionAPIKeyCreate, &Resource{Owner: "alice"}, ErrStepUpRequired},
		{"create key with MFA", def, aliceMFA, ActionAPIKeyCreate, ofAlice, nil},
		{"disable MFA needs fresh MFA", def, aliceMFAStale, ActionMFADisable, &Resource{Owner: "alice"}, ErrStepUpRequired},
		{"disable MFA fresh", def, aliceMFA, ActionMFADisable, &Resource{Owner: "alice"}, nil},
		{"sign without MFA by default", def, alice, ActionSign, aliceHot, nil},
		{"sign requires MFA rule", signMFA, alice, ActionSign, aliceHot, ErrStepUpRequired},
		{"sign requires MFA rule satisfied", signMFA, aliceMFA, ActionSign, aliceHot, nil},
		{"sign requires MFA rule grantee", signMFA, alice, ActionSign, bobShared, ErrStepUpRequired},
		{"short max age", short, aliceMFA, ActionAccountImport, nil, ErrStepUpRequired},
		{"denied before step-up", def, bob, ActionAccountDelete, aliceHot, ErrDenied},
		{"root admin no MFA", def, admin, ActionAPIKeyCreate, &Resource{Owner: "root"}, ErrStepUpRequired},
		{"user lists another user's sessions", def, alice, ActionSessionManage, &Resource{Owner: "bob"}, ErrDenied},

		// API keys
		{"key all reads own", def, keyAll, ActionAccountRead, aliceHot, nil},
		{"key all signs own", def, keyAll, ActionSign, aliceCold, nil},
		{"key all lists", def, keyAll, ActionAccountRead, nil, nil},
		{"key all creates", def, keyAll, ActionAccountCreate, nil, nil},
		{"key all cannot import", def, keyAll, ActionAccountImport, nil, ErrDenied},
		{"key all cannot delete", def, keyAll, ActionAccountDelete, aliceHot, ErrDenied},
		{"key all signs with sign-MFA rule", signMFA, keyAll, ActionSign, aliceHot, ErrDenied},
		{"key explicit sign with sign-MFA rule", signMFA, keySignHot, ActionSign, aliceHot, nil},
		{"key all cannot read granted", def, keyAll, ActionAccountRead, bobShared, ErrDenied},
		{"key all other owner", def, keyAll, ActionSign, bobPrivate, ErrDenied},
		{"key scoped account", def, keySignHot, ActionSign, aliceHot, nil},
		{"key scoped other account", def, keySignHot, ActionSign, aliceCold, ErrDenied},
		{"key scoped action", def, keySignHot, ActionAccountRead, aliceHot, ErrDenied},
		{"key scoped create", def, keySignHot, ActionAccountCreate, nil, ErrDenied},
		{"key sign nil resource", def, keySignHot, ActionSign, nil, ErrDenied},
		{"key explicit import", def, keyImport, ActionAccountImport, nil, nil},
		{"key explicit import for other", def, keyImport, ActionAccountImport, bobPrivate, ErrDenied},
		{"key explicit delete", def, keyImport, ActionAccountDelete, aliceHot, nil},
		{"key explicit delete other", def, keyImport, ActionAccountDelete, bobPrivate, ErrDenied},
		{"key create named out of scope", def, keySignHot, ActionAccountCreate, aliceCold, ErrDenied},
		{"key never user.manage", def, keyAdminish, ActionUserManage, nil, ErrDenied},
		{"key never sys", def, keyAdminish, ActionSysAdmin, nil, ErrDenied},
		{"key never writes policies", def, keyAdminish, ActionPolicyWrite, nil, ErrDenied},
		{"key never creates keys", def, keyAdminish, ActionAPIKeyCreate, nil, ErrDenied},
		{"key never manages keys", def, keyAdminish, ActionAPIKeyManage, ofAlice, ErrDenied},
		{"key never manages sessions", def, keyAdminish, ActionSessionManage, ofAlice, ErrDenied},
		{"key never disables MFA", def, keyAdminish, ActionMFADisable, ofAlice, ErrDenied},
		{"key never grants", def, keyAdminish, ActionAccountGrant, aliceHot, ErrDenied},
		{"key without owner", def, keyNoOwner, ActionAccountRead, &Resource{Name: "x"}, ErrDenied},
		{"key with empty scopes", def, key(nil, nil), ActionAccountRead, aliceHot, ErrDenied},

		// HD wallets: the caller's own; import and delete need step-up
		{"owner creates a wallet", def, alice, ActionWalletCreate, ofAlice, nil},
		{"wallet for someone else", def, alice, ActionWalletCreate, ofBob, ErrDenied},
		{"owner reads a wallet", def, alice, ActionWalletRead, ofAlice, nil},
		{"wallets are listed", def, alice, ActionWalletRead, nil, nil},
		{"no reading another's wallet", def, alice, ActionWalletRead, ofBob, ErrDenied},
		{"admin does not read another's wallet", def, adminMFA, ActionWalletRead, ofBob, ErrDenied},
		{"owner derives", def, alice, ActionWalletDerive, ofAlice, nil},
		{"no deriving from another's wallet", def, alice, ActionWalletDerive, ofBob, ErrDenied},
		{"derive names a wallet", def, alice, ActionWalletDerive, nil, ErrDenied},
		{"mnemonic import needs step-up", def, alice, ActionWalletImport, ofAlice, ErrStepUpRequired},
		{"mnemonic import after step-up", def, aliceMFA, ActionWalletImport, ofAlice, nil},
		{"wallet delete needs step-up", def, alice, ActionWalletDelete, ofAlice, ErrStepUpRequired},
		{"wallet delete after step-up", def, aliceMFA, ActionWalletDelete, ofAlice, nil},
		{"no deleting another's wallet", def, aliceMFA, ActionWalletDelete, ofBob, ErrDenied},
		{"key with * derives", def, keyAll, ActionWalletDerive, ofAlice, nil},
		{"key with * does not import a mnemonic", def, keyAll, ActionWalletImport, ofAlice, ErrDenied},
		{"key with * does not delete a wallet", def, keyAll, ActionWalletDelete, ofAlice, ErrDenied},
		{"key named for wallet import", def, key([]string{"wallet.import"}, nil), ActionWalletImport, ofAlice, nil},
		{"key without the action", def, keySignHot, ActionWalletRead, ofAlice, ErrDenied},
		{"key reads only its owner's wallets", def, keyAll, ActionWalletRead, ofBob, ErrDenied},
		// restore replaces the whole vault: an admin with a fresh second
		// factor, or a root token minutes old (made from a quorum of
		// unseal or recovery shares, or by init)
		{"restore admin MFA", def, adminMFA, ActionSysRestore, nil, nil},
		{"restore admin MFA stale", def, adminMFAStale, ActionSysRestore, nil, ErrStepUpRequired},
		{"restore admin password only", def, adminPwd, ActionSysRestore, nil, ErrStepUpRequired},
		{"restore root fresh", def, admin, ActionSysRestore, nil, nil},
		{"restore root stale", def, rootStale, ActionSysRestore, nil, ErrStepUpRequired},
		{"restore user", def, aliceMFA, ActionSysRestore, nil, ErrDenied},
		{"restore user with root amr", def, userNamedRoot, ActionSysRestore, nil, ErrDenied},
		{"restore key", def, keyAdminish, ActionSysRestore, nil, ErrDenied},
		{"root is no step-up for other actions", def, admin, ActionAPIKeyCreate, &Resource{Owner: "root"}, ErrStepUpRequired},
		// policy_change_approvals set (review H1, M1): user writes need
		// step-up (the root token counts), a restore needs the root token
		{"users: no step-up without the quorum", def, adminPwd, ActionUserManage, nil, nil},
		{"users: step-up under the quorum", quorum, adminPwd, ActionUserManage, nil, ErrStepUpRequired},
		{"users: admin MFA under the quorum", quorum, adminMFA, ActionUserManage, nil, nil},
		{"users: root under the quorum", quorum, admin, ActionUserManage, nil, nil},
		{"users: stale root under the quorum", quorum, rootStale, ActionUserManage, nil, ErrStepUpRequired},
		{"users: a user under the quorum", quorum, aliceMFA, ActionUserManage, nil, ErrDenied},
		{"restore: admin MFA is not the quorum", quorum, adminMFA, ActionSysRestore, nil, ErrQuorumRequired},
		{"restore: admin password only", quorum, adminPwd, ActionSysRestore, nil, ErrStepUpRequired},
		{"restore: root under the quorum", quorum, admin, ActionSysRestore, nil, nil},
		{"restore: stale root under the quorum", quorum, rootStale, ActionSysRestore, nil, ErrStepUpRequired},
		{"restore: user with root amr under the quorum", quorum, userNamedRoot, ActionSysRestore, nil, ErrDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.rules.Authorize(tt.p, tt.a, tt.res, now)
			if !errors.Is(got, tt.want) || (tt.want == nil && got != nil) {
				t.Fatalf("Authorize = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIsSensitive(t *testing.T) {
	tests := []struct {
		a    Action
		sign bool
		want bool
	}{
		{ActionAccountImport, false, true},
		{ActionAccountDelete, false, true},
		{ActionAPIKeyCreate, false, true},
		{ActionMFADisable, false, true},
		{ActionAccountGrant, false, true},
		{ActionPasswordReset, false, true},
		{ActionAccountUngrant, false, false},
		{ActionSign, false, false},
		{ActionSign, true, true},
		{ActionAccountRead, true, false},
		{ActionAccountCreate, false, false},
		{ActionUserManage, false, false},
		{ActionSysAdmin, false, false},
		{ActionPolicyWrite, false, true},
		{ActionWalletImport, false, true},
		{ActionWalletDelete, false, true},
		{ActionWalletCreate, false, false},
		{ActionWalletDerive, false, false},
		{ActionWalletRead, false, false},
		{ActionSysRestore, false, true},
	}
	for _, tt := range tests {
		if got := IsSensitive(tt.a, Rules{SignRequiresMFA: tt.sign}); got != tt.want {
			t.Errorf("IsSensitive(%s, sign=%v) = %v, want %v", tt.a, tt.sign, got, tt.want)
		}
	}
	if !IsSensitive(ActionUserManage, Rules{Quorum: true}) || IsSensitive(ActionUserManage, Rules{}) {
		t.Error("user writes are sensitive under the quorum only")
	}
}

func TestAPIKeyAction(t *testing.T) {
	for _, a := range []Action{ActionAccountCreate, ActionAccountImport, ActionAccountRead, ActionAccountDelete, ActionSign,
		ActionWalletCreate, ActionWalletImport, ActionWalletRead, ActionWalletDelete, ActionWalletDerive} {
		if !APIKeyAction(a) {
			t.Errorf("APIKeyAction(%s) = false", a)
		}
	}
	for _, a := range []Action{ActionUserManage, ActionSessionManage, ActionAPIKeyCreate, ActionAPIKeyManage, ActionMFADisable, ActionSysAdmin, ActionAccountGrant, ActionPolicyWrite, "x"} {
		if APIKeyAction(a) {
			t.Errorf("APIKeyAction(%s) = true", a)
		}
	}
}
