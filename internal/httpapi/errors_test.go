package httpapi

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/softhsm"
	"github.com/moonvault/moonvault/internal/jsonkeys"
	"github.com/moonvault/moonvault/internal/jsonrpc"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secp"
	"github.com/moonvault/moonvault/internal/shamir"
	"github.com/moonvault/moonvault/internal/signpolicy"
	"github.com/moonvault/moonvault/internal/snapshot"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/tee"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/btc"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/evm"
	"github.com/moonvault/moonvault/internal/wallet/solana"
)

// domainErrors lists every exported Err* value and error type of
// internal/... by "<dir under internal>.<Name>". TestEveryDomainErrorHasAnAnswer
// finds them in the source and fails when one is missing here, so a new
// sentinel cannot reach the edge unmapped.
var domainErrors = map[string]error{
	"audit.ErrUnavailable":  audit.ErrUnavailable,
	"audit.ErrClosed":       audit.ErrClosed,
	"audit.VerifyError":     &audit.VerifyError{Line: 1, Reason: "bad hash"},
	"audit.ErrUnverified":   audit.ErrUnverified,
	"audit.UnverifiedError": &audit.UnverifiedError{Unverified: []string{"lines seq 5-9 are covered by no checkpoint signed by a trusted key"}},
	"audit.ErrLocked":       audit.ErrLocked,

	"auth.ErrInvalidCredentials": auth.ErrInvalidCredentials,
	"auth.ErrMFARequired":        auth.ErrMFARequired,
	"auth.ErrUnauthenticated":    auth.ErrUnauthenticated,
	"auth.ErrSessionRevoked":     auth.ErrSessionRevoked,
	"auth.ErrUserDisabled":       auth.ErrUserDisabled,
	"auth.ErrRateLimited":        auth.ErrRateLimited,
	"auth.ErrUserExists":         auth.ErrUserExists,
	"auth.ErrConflict":           auth.ErrConflict,
	"auth.ErrNoSecondFactor":     auth.ErrNoSecondFactor,
	"auth.ErrNotFound":           auth.ErrNotFound,
	"auth.ErrInvalidInput":       auth.ErrInvalidInput,
	"auth.ErrWeakPassword":       auth.ErrWeakPassword,
	"auth.ErrNotStarted":         auth.ErrNotStarted,
	"auth.RateLimitError":        &auth.RateLimitError{RetryAfter: time.Minute},

	"barrier.ErrSealed":             barrier.ErrSealed,
	"barrier.ErrIntegrity":          barrier.ErrIntegrity,
	"barrier.ErrUnknownTerm":        barrier.ErrUnknownTerm,
	"barrier.ErrReservedPath":       barrier.ErrReservedPath,
	"barrier.ErrWrongRootKey":       barrier.ErrWrongRootKey,
	"barrier.ErrInvalidRootKey":     barrier.ErrInvalidRootKey,
	"barrier.ErrAlreadyInitialized": barrier.ErrAlreadyInitialized,
	"barrier.ErrNotInitialized":     barrier.ErrNotInitialized,
	"barrier.ErrWrapperMismatch":    barrier.ErrWrapperMismatch,
	"barrier.ErrBudgetExhausted":    barrier.ErrBudgetExhausted,

	"core.ErrNotInitialized":     core.ErrNotInitialized,
	"core.ErrAlreadyInitialized": core.ErrAlreadyInitialized,
	"core.ErrSealed":             core.ErrSealed,
	"core.ErrInvalidShare":       core.ErrInvalidShare,
	"core.ErrWrongCombination":   core.ErrWrongCombination,
	"core.ErrInvalidRequest":     core.ErrInvalidRequest,
	"core.ErrAutoSeal":           core.ErrAutoSeal,
	"core.ErrNoRekey":            core.ErrNoRekey,
	"core.ErrNonceMismatch":      core.ErrNonceMismatch,
	"core.ErrUnsealRefused":      core.ErrUnsealRefused,
	"core.ErrMigrationRequired":  core.ErrMigrationRequired,
	"core.ErrSealTampered":       core.ErrSealTampered,

	"entropy.ErrUnavailable": entropy.ErrUnavailable,

	"hsm.ErrTokenNotFound": hsm.ErrTokenNotFound,
	"hsm.ErrKeyNotFound":   hsm.ErrKeyNotFound,
	"hsm.ErrDecrypt":       hsm.ErrDecrypt,
	"hsm.ErrClosed":        hsm.ErrClosed,
	"hsm.Error":            &hsm.Error{Op: "login"},
	"hsm.ErrUnavailable":   hsm.ErrUnavailable,
	"hsm.ErrKeyUnsafe":     hsm.ErrKeyUnsafe,
	"hsm.ErrPINMissing":    hsm.ErrPINMissing,
	"hsm.ErrPINRejected":   hsm.ErrPINRejected,
	"hsm.ErrLibrary":       hsm.ErrLibrary,
	"hsm.ErrInUse":         hsm.ErrInUse,
	"hsm/softhsm.ErrInUse": softhsm.ErrInUse,

	"jsonkeys.PathError": &jsonkeys.PathError{Path: "to", Problem: "duplicate key"},
	"jsonrpc.Error":      &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "bad"},

	"policy.ErrDenied":         policy.ErrDenied,
	"policy.ErrStepUpRequired": policy.ErrStepUpRequired,
	"policy.ErrQuorumRequired": policy.ErrQuorumRequired,

	"seal.ErrDecrypt":  seal.ErrDecrypt,
	"seal.ErrNoRetry":  seal.ErrNoRetry,
	"fips.ErrRequired": fips.ErrRequired,

	"sealwrap.ErrIntegrity":  sealwrap.ErrIntegrity,
	"sealwrap.ErrWrongKey":   sealwrap.ErrWrongKey,
	"sealwrap.ErrNotWrapped": sealwrap.ErrNotWrapped,

	"shamir.ErrInvalidParams":       shamir.ErrInvalidParams,
	"shamir.ErrEmptySecret":         shamir.ErrEmptySecret,
	"shamir.ErrTooFewShares":        shamir.ErrTooFewShares,
	"shamir.ErrShareTooShort":       shamir.ErrShareTooShort,
	"shamir.ErrShareLengthMismatch": shamir.ErrShareLengthMismatch,
	"shamir.ErrZeroX":               shamir.ErrZeroX,
	"shamir.ErrDuplicateX":          shamir.ErrDuplicateX,

	"snapshot.ErrInvalid": snapshot.ErrInvalid,
	"snapshot.ErrForeign": snapshot.ErrForeign,

	"storage/bolt.ErrRestoreInProgress":     bolt.ErrRestoreInProgress,
	"storage/postgres.ErrRestoreInProgress": postgres.ErrRestoreInProgress,
	"storage/postgres.ErrTableBusy":         postgres.ErrTableBusy,

	"storage.ErrNotFound":          storage.ErrNotFound,
	"storage.ErrUnavailable":       storage.ErrUnavailable,
	"storage.ErrInvalidKey":        storage.ErrInvalidKey,
	"storage.ErrConflict":          storage.ErrConflict,
	"storage.ErrRestoreNotDurable": storage.ErrRestoreNotDurable,

	"tee.ErrInvalidNonce":           tee.ErrInvalidNonce,
	"tee.ErrNoTLSKey":               tee.ErrNoTLSKey,
	"tee.ErrReportDataMismatch":     tee.ErrReportDataMismatch,
	"tee.ErrNoTEE":                  tee.ErrNoTEE,
	"tee.ErrDebugTEE":               tee.ErrDebugTEE,
	"tee.ErrMeasurementMismatch":    tee.ErrMeasurementMismatch,
	"tee.ErrUnknownTEE":             tee.ErrUnknownTEE,
	"tee.ErrTEERequired":            tee.ErrTEERequired,
	"tee.ErrNoReferenceMeasurement": tee.ErrNoReferenceMeasurement,
	"tee.ErrCollateralUnchecked":    tee.ErrCollateralUnchecked,

	"wallet.ErrNotFound":        wallet.ErrNotFound,
	"wallet.ErrExists":          wallet.ErrExists,
	"wallet.ErrInvalidName":     wallet.ErrInvalidName,
	"wallet.ErrInvalidOwner":    wallet.ErrInvalidOwner,
	"wallet.ErrInvalidKey":      wallet.ErrInvalidKey,
	"wallet.ErrKeyMismatch":     wallet.ErrKeyMismatch,
	"wallet.ErrNoProvenance":    wallet.ErrNoProvenance,
	"wallet.ErrWalletNotFound":  wallet.ErrWalletNotFound,
	"wallet.ErrWalletExists":    wallet.ErrWalletExists,
	"wallet.ErrWalletInUse":     wallet.ErrWalletInUse,
	"wallet.ErrWalletIntegrity": wallet.ErrWalletIntegrity,

	"provenance.ErrInvalid": provenance.ErrInvalid,

	"wallet/evm.ErrChainMismatch": evm.ErrChainMismatch,

	"approval.ErrAlreadyVoted":              approval.ErrAlreadyVoted,
	"approval.ErrApproversUnavailable":      approval.ErrApproversUnavailable,
	"approval.ErrBadCursor":                 approval.ErrBadCursor,
	"approval.ErrTooManyPending":            approval.ErrTooManyPending,
	"approval.ErrExpired":                   approval.ErrExpired,
	"approval.ErrMFARequired":               approval.ErrMFARequired,
	"approval.ErrNotApprover":               approval.ErrNotApprover,
	"approval.ErrNotFound":                  approval.ErrNotFound,
	"approval.ErrNotPending":                approval.ErrNotPending,
	"approval.ErrSelfApproval":              approval.ErrSelfApproval,
	"approval.ErrUnsatisfiable":             approval.ErrUnsatisfiable,
	"approval.ErrWrongState":                approval.ErrWrongState,
	"hd.ErrInvalidMnemonic":                 hd.ErrInvalidMnemonic,
	"hd.ErrInvalidPath":                     hd.ErrInvalidPath,
	"hd.ErrNotHardened":                     hd.ErrNotHardened,
	"secp.ErrInvalidKey":                    secp.ErrInvalidKey,
	"signpolicy.ErrCostLimit":               signpolicy.ErrCostLimit,
	"signpolicy.ErrPolicyDenied":            signpolicy.ErrPolicyDenied,
	"signpolicy.DeniedError":                &signpolicy.DeniedError{Match: signpolicy.Match{Policy: "pol_x", Name: "cap", Reason: "over"}},
	"signpolicy.ErrExists":                  signpolicy.ErrExists,
	"signpolicy.ErrInvalidDocument":         signpolicy.ErrInvalidDocument,
	"signpolicy.ErrNotFound":                signpolicy.ErrNotFound,
	"signpolicy.ErrNotLoaded":               signpolicy.ErrNotLoaded,
	"signpolicy.ErrStoreInconsistent":       signpolicy.ErrStoreInconsistent,
	"signpolicy.ErrVersionConflict":         signpolicy.ErrVersionConflict,
	"wallet/btc.ErrNothingToSign":           btc.ErrNothingToSign,
	"wallet/btc.ErrPublicKey":               btc.ErrPublicKey,
	"wallet/btc.ErrSigned":                  btc.ErrSigned,
	"wallet/btc.ErrUnsupported":             btc.ErrUnsupported,
	"wallet/chain.ErrAccountMismatch":       chain.ErrAccountMismatch,
	"wallet/chain.ErrBadKey":                chain.ErrBadKey,
	"wallet/chain.ErrKeyMismatch":           chain.ErrKeyMismatch,
	"wallet/evm.ErrFromMismatch":            evm.ErrFromMismatch,
	"wallet/solana.ErrMessageIsTransaction": solana.ErrMessageIsTransaction,
	"wallet/solana.ErrNotSigner":            solana.ErrNotSigner,
	"wallet/solana.ErrPublicKey":            solana.ErrPublicKey,
	"wallet/solana.ErrUnsupported":          solana.ErrUnsupported,
}

// TestEveryDomainErrorHasAnAnswer walks internal/... for exported Err*
// variables and exported types with an Error method, and fails when one is
// not in domainErrors, or when one would answer 500 without being an
// integrity failure (500 means a bug, or storage that was tampered with).
func TestEveryDomainErrorHasAnAnswer(t *testing.T) {
	found := scanDomainErrors(t, filepath.Join("..", "..", "internal"))
	for _, name := range found {
		if _, ok := domainErrors[name]; !ok {
			t.Errorf("%s is not in domainErrors: give it a kind (errkind.New / a Kind method) and list it", name)
		}
	}
	for name, err := range domainErrors {
		if !slices.Contains(found, name) {
			t.Errorf("domainErrors lists %s, which the source no longer declares", name)
			continue
		}
		f := classify(fmt.Errorf("context: %w", err))
		k := errkind.Of(err)
		if k == errkind.Other {
			t.Errorf("%s has no kind", name)
		}
		if f.status == 500 && k != errkind.Integrity {
			t.Errorf("%s answers 500 %s", name, f.code)
		}
		if f.code == "internal" {
			t.Errorf("%s answers code internal", name)
		}
	}
	if len(found) < 60 {
		t.Fatalf("scan found only %d errors; is the walk broken?", len(found))
	}
}

// scanDomainErrors lists "<dir>.<Name>" for the exported Err* package
// variables and the exported non-alias types with an Error method, outside
// tests and package errkind (whose types are the shapes, not errors).
func scanDomainErrors(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		rel = filepath.ToSlash(rel)
		if rel == "errkind" {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				if d.Tok != token.VAR {
					continue
				}
				for _, sp := range d.Specs {
					for _, n := range sp.(*ast.ValueSpec).Names {
						if strings.HasPrefix(n.Name, "Err") {
							out = append(out, rel+"."+n.Name)
						}
					}
				}
			case *ast.FuncDecl:
				if d.Recv == nil || d.Name.Name != "Error" {
					continue
				}
				typ := d.Recv.List[0].Type
				if s, ok := typ.(*ast.StarExpr); ok {
					typ = s.X
				}
				if id, ok := typ.(*ast.Ident); ok && ast.IsExported(id.Name) {
					out = append(out, rel+"."+id.Name)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestClassify(t *testing.T) {
	secretCause := errors.New(`dial postgres://vault:hunter2@db:5432: refused`)
	for _, tc := range []struct {
		name          string
		err           error
		status        int
		code, message string
		field         string
	}{
		{"totp enrolled twice", fmt.Errorf("%w: TOTP already enabled; disable it first", auth.ErrConflict), 409, "conflict", "conflict: TOTP already enabled; disable it first", ""},
		{"api key limit", fmt.Errorf("%w: at most 100 API keys per user", auth.ErrConflict), 409, "conflict", "conflict: at most 100 API keys per user", ""},
		{"sealwrap wrong key", sealwrap.ErrWrongKey, 503, "seal_key_unavailable", "sealwrap: wrapped under a key this node does not hold", ""},
		{"sealwrap not wrapped", sealwrap.ErrNotWrapped, 503, "rewrap_required", "sealwrap: value is not seal-wrapped (run moonvault operator rewrap)", ""},
		{"sealwrap tampered", sealwrap.ErrIntegrity, 500, "integrity_error", "stored data failed its integrity check", ""},
		{"storage down hides its cause", fmt.Errorf("%w: %w", storage.ErrUnavailable, secretCause), 503, "storage_unavailable", "storage is unavailable; retry later", ""},
		{"entropy through an hsm failure", fmt.Errorf("%w: %w", entropy.ErrUnavailable, &hsm.Error{Op: "generate random"}), 503, "entropy_unavailable", "entropy source unavailable; no key was generated", ""},
		{"hsm", fmt.Errorf("seal: encrypt: %w", &hsm.Error{Op: "encrypt"}), 503, "hsm_unavailable", "the HSM is unavailable; retry later", ""},
		{"field", fmt.Errorf("parse: %w", &evm.FieldError{Name: "to", Msg: "not an address"}), 400, "invalid_request", "parse: invalid to: not an address", "to"},
		{"weak password", &auth.InvalidInputError{Name: "password", Msg: "shorter than 12 characters", Code: "weak_password", Sentinel: auth.ErrWeakPassword}, 400, "weak_password", "invalid password: shorter than 12 characters", "password"},
		{"token check not revealed", fmt.Errorf("%w: kid missing", auth.ErrUnauthenticated), 401, "unauthenticated", "missing, invalid or expired credentials", ""},
		{"bug", fmt.Errorf("wallet: %w", secretCause), 500, "internal", "internal error", ""},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), 503, "timeout", "the request timed out", ""},
		{"step-up", policy.ErrStepUpRequired, 403, "mfa_required", "this operation needs a recent login with a TOTP code (step-up)", ""},
		{"not found hides the path", fmt.Errorf("barrier: get auth/totp/alice: %w", storage.ErrNotFound), 404, "not_found", "storage: not found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := classify(tc.err)
			if f.status != tc.status || f.code != tc.code || f.message != tc.message || f.field != tc.field {
				t.Errorf("classify = %d %q %q field %q, want %d %q %q field %q", f.status, f.code, f.message, f.field, tc.status, tc.code, tc.message, tc.field)
			}
			if strings.Contains(f.message, "hunter2") {
				t.Errorf("message echoes a secret: %q", f.message)
			}
		})
	}
}

func TestClassifyRateLimit(t *testing.T) {
	f := classify(fmt.Errorf("login: %w", &auth.RateLimitError{RetryAfter: 41500 * time.Millisecond}))
	if f.status != 429 || f.code != "rate_limited" || f.header.Get("Retry-After") != "42" {
		t.Fatalf("classify = %+v", f)
	}
	if !strings.Contains(f.message, "42s") {
		t.Errorf("message %q does not say for how long", f.message)
	}
}
