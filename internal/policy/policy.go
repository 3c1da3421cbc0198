// Package policy makes every authorization decision of the vault. It is a
// pure function of the principal, the action, the resource and the clock:
// deny by default, no storage, no I/O.
package policy

import (
	"slices"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/moonvault/moonvault/internal/identity"
)

// Action names an operation the vault authorizes. The string values are the
// ones stored in API key scopes.
type Action string

// Actions.
const (
	ActionAccountCreate Action = "account.create"
	ActionAccountImport Action = "account.import"
	ActionAccountRead   Action = "account.read"
	ActionAccountDelete Action = "account.delete"
	ActionAccountGrant  Action = "account.grant"
	// ActionAccountUngrant withdraws a grant: the owner only, and no
	// step-up (taking rights away must stay easy).
	ActionAccountUngrant Action = "account.ungrant"
	ActionSign           Action = "account.sign"
	// HD wallets: always the caller's own (wallets are not granted).
	ActionWalletCreate Action = "wallet.create"
	ActionWalletImport Action = "wallet.import" // a mnemonic: step-up, like a key import
	ActionWalletRead   Action = "wallet.read"
	ActionWalletDelete Action = "wallet.delete" // destroys the seed: step-up
	// ActionWalletDerive uses a wallet's seed to derive a new account (the
	// account itself also needs ActionAccountCreate).
	ActionWalletDerive Action = "wallet.derive"
	// ActionUserManage writes users (create, delete, disable, enable):
	// admins; with step-up when Rules.Quorum.
	ActionUserManage    Action = "user.manage"
	ActionSessionManage Action = "session.manage"
	ActionAPIKeyCreate  Action = "apikey.create"
	ActionAPIKeyManage  Action = "apikey.manage"
	ActionMFADisable    Action = "mfa.disable"
	// ActionPasswordReset is an administrator setting another user's
	// password: it can hand over that user's accounts, so it needs step-up.
	ActionPasswordReset Action = "user.password_reset"
	// ActionSysAdmin covers sys operations: rotate, seal, entropy,
	// hardening, audit hash.
	ActionSysAdmin Action = "sys"
	// ActionSysRestore replaces the whole vault with a snapshot: admins
	// only, with step-up.
	ActionSysRestore Action = "sys.restore"
	// ActionPolicyWrite creates, changes or deletes a transaction policy:
	// admins, with step-up (a stolen session must not lift a limit).
	ActionPolicyWrite Action = "policy.write"
)

// AllScopeWildcard in an API key's Actions or Accounts means "all": for
// actions, every non-sensitive action an API key may hold; for accounts,
// every account of the key's owner.
const AllScopeWildcard = "*"

var (
	// ErrDenied means the principal may not perform the action (HTTP 403
	// forbidden).
	ErrDenied = errkind.New(errkind.Denied, "forbidden", "not allowed")
	// ErrStepUpRequired means the action is sensitive and the principal must
	// authenticate again with a second factor (HTTP 403 mfa_required).
	ErrStepUpRequired = errkind.New(errkind.Denied, "mfa_required", "this operation needs a recent login with a TOTP code (step-up)")
	// ErrQuorumRequired: with policy_change_approvals set, a restore needs
	// a root token minutes old (HTTP 403 quorum_required).
	ErrQuorumRequired = errkind.New(errkind.Denied, "quorum_required",
		"with policy_change_approvals set, a restore needs a root token at most 10 minutes old, made from a quorum of unseal or recovery shares (moonvault operator generate-root): one admin's second factor is not enough")
)

// DefaultStepUpMaxAge bounds how old auth_time may be for a sensitive
// action (NIST SP 800-63B §4.2.3 reauthentication, tightened for key use).
const DefaultStepUpMaxAge = 10 * time.Minute

// Resource is the object of an action. For account actions it is the
// account: Owner, Name and Grants (usernames allowed to read and sign). For
// ActionSessionManage, ActionAPIKeyManage, ActionAPIKeyCreate and
// ActionMFADisable, Owner names the user whose sessions, keys or MFA are
// concerned. It is nil for other actions, and for ActionAccountRead when
// listing (the caller then filters each account through Authorize).
type Resource struct {
	Owner  string
	Name   string
	Grants []string
}

// Rules are the tunable parts of the policy.
type Rules struct {
	// SignRequiresMFA makes ActionSign sensitive (step-up for every sign).
	SignRequiresMFA bool
	// StepUpMaxAge is how recent auth_time must be for a sensitive action;
	// zero means DefaultStepUpMaxAge.
	StepUpMaxAge time.Duration
	// Quorum is set when policy_change_approvals is above zero: one admin
	// must not be able to act alone on what the quorum guards (review H1,
	// M1). User writes then need step-up, and a restore needs a root token
	// (made from a quorum of unseal or recovery shares by generate-root):
	// an admin's second factor is not enough, since a restore rolls back
	// policies and limits.
	Quorum bool
}

// apiKeyActions are the only actions an API key can ever hold. Keys never
// manage users, sessions, keys, MFA or the system.
var apiKeyActions = map[Action]bool{
	ActionAccountCreate: true,
	ActionAccountImport: true,
	ActionAccountRead:   true,
	ActionAccountDelete: true,
	ActionSign:          true,
	ActionWalletCreate:  true,
	ActionWalletImport:  true,
	ActionWalletRead:    true,
	ActionWalletDelete:  true,
	ActionWalletDerive:  true,
}

// APIKeyAction reports whether an API key may be scoped to a.
func APIKeyAction(a Action) bool { return apiKeyActions[a] }

// IsSensitive reports whether a needs a recent second factor: importing a
// key, deleting an account, granting another principal the use of an
// account (it hands out signing rights, as an API key does), creating an
// API key, disabling MFA, resetting another user's password, restoring a
// snapshot, changing a transaction policy, signing when r.SignRequiresMFA,
// and writing users when r.Quorum.
func IsSensitive(a Action, r Rules) bool {
	switch a {
	case ActionUserManage:
		return r.Quorum
	case ActionAccountImport, ActionAccountDelete, ActionAccountGrant, ActionAPIKeyCreate, ActionMFADisable, ActionPasswordReset, ActionSysRestore,
		ActionWalletImport, ActionWalletDelete, ActionPolicyWrite:
		return true
	case ActionSign:
		return r.SignRequiresMFA
	}
	return false
}

// Authorize returns nil when p may perform a on res at now, ErrDenied when
// it may not, and ErrStepUpRequired when it could after a fresh MFA login.
//
// Wallet actions concern the caller's own wallets only (res.Owner; nil
// when listing).
//
// API keys: a key acts for p.Owner, only for actions listed in p.Actions and
// accounts of p.Owner listed in p.Accounts ("*" = all of the owner's; an
// account shared with the owner through Grants is not reachable by a key).
// Keys are created under step-up, so a sensitive action is allowed to a key
// only when named explicitly in p.Actions ("*" never grants one); no MFA
// check is made for keys.
func (r Rules) Authorize(p *identity.Principal, a Action, res *Resource, now time.Time) error {
	if p == nil || p.Subject == "" {
		return ErrDenied
	}
	var err error
	if p.IsAPIKey() {
		err = r.authorizeAPIKey(p, a, res)
	} else {
		err = authorizeUser(p, a, res)
	}
	if err != nil {
		return err
	}
	if !p.IsAPIKey() && IsSensitive(a, r) && !r.fresh(p, a, now) {
		return ErrStepUpRequired
	}
	if a == ActionSysRestore && r.Quorum && !isRoot(p) {
		return ErrQuorumRequired
	}
	return nil
}

// isRoot reports whether p is a root token (amr "root").
func isRoot(p *identity.Principal) bool {
	return p.Role == identity.RoleAdmin && !p.IsAPIKey() && slices.Contains(p.AMR, "root")
}

// fresh reports whether p authenticated strongly enough, recently enough,
// for the sensitive action a: a second factor, or, for a restore or a user
// write, a root token (issued by init or by generate-root from a quorum of
// unseal or recovery shares: a stronger proof than a TOTP code, and the
// only admin a vault just initialised has).
func (r Rules) fresh(p *identity.Principal, a Action, now time.Time) bool {
	maxAge := r.StepUpMaxAge
	if maxAge <= 0 {
		maxAge = DefaultStepUpMaxAge
	}
	strong := p.HasMFA() || ((a == ActionSysRestore || a == ActionUserManage) && isRoot(p))
	if !strong || p.AuthTime.IsZero() {
		return false
	}
	age := now.Sub(p.AuthTime)
	// A small negative age tolerates clock skew between nodes; a far-future
	// auth_time is not trusted.
	return age <= maxAge && age >= -time.Minute
}

func authorizeUser(p *identity.Principal, a Action, res *Resource) error {
	user := p.Subject
	admin := p.Role == identity.RoleAdmin
	switch a {
	case ActionAccountCreate, ActionAccountImport:
		// An account is always created for the caller itself.
		if res != nil && res.Owner != "" && res.Owner != user {
			return ErrDenied
		}
		return nil
	case ActionAccountRead, ActionSign:
		if res == nil {
			if a == ActionAccountRead {
				return nil // listing: the caller filters per account
			}
			return ErrDenied
		}
		if res.Owner == user || slices.Contains(res.Grants, user) {
			return nil
		}
		return ErrDenied
	case ActionAccountDelete, ActionAccountGrant, ActionAccountUngrant:
		if res != nil && res.Owner == user {
			return nil
		}
		return ErrDenied
	case ActionWalletCreate, ActionWalletImport, ActionWalletRead, ActionWalletDelete, ActionWalletDerive:
		return ownWallet(res, user, a)
	case ActionUserManage, ActionSysAdmin, ActionPasswordReset, ActionSysRestore, ActionPolicyWrite:
		if admin {
			return nil
		}
		return ErrDenied
	case ActionSessionManage, ActionAPIKeyManage, ActionAPIKeyCreate, ActionMFADisable:
		// The handler names the user acted on; a missing one is denied, never
		// taken as "self" (a nil resource once let any user end others' sessions).
		if res == nil || res.Owner == "" {
			return ErrDenied
		}
		self := res.Owner == user
		switch {
		case self:
			return nil
		case admin && a != ActionAPIKeyCreate:
			// Admins end other users' sessions, revoke their keys and reset
			// a lost second factor; they never mint keys for someone else.
			return nil
		}
		return ErrDenied
	}
	return ErrDenied
}

func (r Rules) authorizeAPIKey(p *identity.Principal, a Action, res *Resource) error {
	owner := p.Owner
	if owner == "" || !apiKeyActions[a] || !keyHasAction(p, a, r) {
		return ErrDenied
	}
	switch a {
	case ActionWalletCreate, ActionWalletImport, ActionWalletRead, ActionWalletDelete, ActionWalletDerive:
		// A key's account scope names accounts, not wallets.
		return ownWallet(res, owner, a)
	case ActionAccountCreate, ActionAccountImport:
		if res == nil {
			return nil
		}
		if res.Owner != "" && res.Owner != owner {
			return ErrDenied
		}
		if res.Name != "" && !keyHasAccount(p, res.Name) {
			return ErrDenied
		}
		return nil
	case ActionAccountRead:
		if res == nil {
			return nil // listing: the caller filters per account
		}
	}
	if res == nil || res.Owner != owner || !keyHasAccount(p, res.Name) {
		return ErrDenied
	}
	return nil
}

func keyHasAction(p *identity.Principal, a Action, r Rules) bool {
	if slices.Contains(p.Actions, string(a)) {
		return true
	}
	return !IsSensitive(a, r) && slices.Contains(p.Actions, AllScopeWildcard)
}

func keyHasAccount(p *identity.Principal, name string) bool {
	return slices.Contains(p.Accounts, AllScopeWildcard) || (name != "" && slices.Contains(p.Accounts, name))
}

// ownWallet allows a wallet action on owner's own wallet; a nil resource
// is a listing (read) or a creation in the caller's namespace.
func ownWallet(res *Resource, owner string, a Action) error {
	if res == nil {
		if a == ActionWalletRead || a == ActionWalletCreate || a == ActionWalletImport {
			return nil
		}
		return ErrDenied
	}
	if res.Owner == owner {
		return nil
	}
	return ErrDenied
}
