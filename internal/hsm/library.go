package hsm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/secret"
)

// A PKCS#11 library is initialised once per process (PKCS#11 v2.40 §5.4:
// a second C_Initialize returns CKR_CRYPTOKI_ALREADY_INITIALIZED), and login
// state is per token per process, not per session. So every Module on the
// same library shares one context, reference counted: the first Open calls
// C_Initialize (which is when SoftHSM2 reads SOFTHSM2_CONF and scans its
// token directory). The library then stays initialised when the last
// Module closes, because some libraries cannot be initialised again in the
// same process (opencryptoki 3.8 crashes in C_Initialize after
// C_Finalize); Reset finalises an idle library on request (SoftHSM2 must
// be, to read another SOFTHSM2_CONF). This is the one process-wide
// registry in the package; it mirrors the library's own state.
var registry = struct {
	sync.Mutex
	libs map[string]*library
}{libs: map[string]*library{}}

type library struct {
	path string
	ctx  *pkcs11.Ctx
	refs int
	// ownInit is false when something else in the process had already
	// initialised the library: then we must not finalise it either.
	ownInit bool
	// logins remembers, per slot, a keyed MAC of the PIN this process logged
	// in with. C_Login answers CKR_USER_ALREADY_LOGGED_IN without checking
	// the PIN when another Module already logged in, so a second Open with a
	// wrong PIN would otherwise succeed.
	logins map[uint][]byte
	macKey []byte
	mu     sync.Mutex // guards logins
}

func acquire(path string) (*library, error) {
	registry.Lock()
	defer registry.Unlock()
	if l, ok := registry.libs[path]; ok {
		l.refs++
		return l, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("%w %q (hsm_lib): no such file, or not a PKCS#11 module", ErrLibrary, path)
	}
	own := true
	if err := ctx.Initialize(); err != nil {
		var rv pkcs11.Error
		if !errors.As(err, &rv) || rv != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			ctx.Destroy()
			return nil, wrapRV("initialize", err)
		}
		own = false
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand never fails (Go 1.24+)
	l := &library{path: path, ctx: ctx, refs: 1, ownInit: own, logins: map[uint][]byte{}, macKey: key}
	registry.libs[path] = l
	return l, nil
}

func (l *library) release() error {
	registry.Lock()
	defer registry.Unlock()
	l.refs--
	return nil
}

// ErrInUse is returned by Reset while a Module on the library is open.
var ErrInUse = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: library in use by an open module")

// Reset finalises the library at path (C_Finalize) if no Module uses it,
// so that the next Open initialises it afresh: SoftHSM2 then reads
// SOFTHSM2_CONF and its token directory again. Not for opencryptoki 3.8,
// which cannot be initialised twice in one process.
func Reset(path string) error {
	registry.Lock()
	defer registry.Unlock()
	l, ok := registry.libs[path]
	if !ok {
		return nil
	}
	if l.refs > 0 {
		return ErrInUse
	}
	delete(registry.libs, path)
	var err error
	if l.ownInit {
		err = l.ctx.Finalize()
	}
	l.ctx.Destroy()
	return wrapRV("finalize", err)
}

func (l *library) pinMAC(pin secret.String) []byte {
	h := hmac.New(sha256.New, l.macKey)
	h.Write([]byte(pin.Reveal()))
	return h.Sum(nil)
}

// login logs the token in as CKU_USER on session s. A token this process is
// already logged in to is accepted only with the same PIN.
func (l *library) login(api API, s pkcs11.SessionHandle, slot uint, pin secret.String) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	mac := l.pinMAC(pin)
	err := api.Login(s, pkcs11.CKU_USER, pin.Reveal())
	var rv pkcs11.Error
	switch {
	case err == nil:
		l.logins[slot] = mac
		return nil
	case errors.As(err, &rv) && rv == pkcs11.CKR_USER_ALREADY_LOGGED_IN:
		if prev, ok := l.logins[slot]; ok && !hmac.Equal(prev, mac) {
			return &Error{Op: "login", RV: pkcs11.CKR_PIN_INCORRECT}
		}
		l.logins[slot] = mac
		return nil
	default:
		return wrapRV("login", err)
	}
}

// InUse reports whether an open Module uses the PKCS#11 library. While
// the library is initialised (also when idle, until Reset), its
// configuration (for SoftHSM2, SOFTHSM2_CONF and tokens created by other
// processes) is not re-read.
func InUse(lib string) bool {
	registry.Lock()
	defer registry.Unlock()
	l, ok := registry.libs[lib]
	return ok && l.refs > 0
}

// InitToken initialises the first free token (CKF_TOKEN_INITIALIZED clear)
// of the library with label and the SO PIN, then sets the user PIN. It runs
// in-process, so the new token is visible at once to Modules that are open
// on the same library (a token made by another process, e.g. softhsm2-util,
// is only seen after every Module closed and the library re-initialises).
// The PINs never appear in errors.
func InitToken(lib, label string, soPIN, userPIN secret.String) error {
	if label == "" || len(label) > 32 {
		return fmt.Errorf("hsm: token label must be 1..32 bytes, got %d", len(label))
	}
	l, err := acquire(lib)
	if err != nil {
		return err
	}
	defer l.release()
	// Two concurrent calls would pick the same free slot.
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := findSlot(l.ctx, label); err == nil {
		return fmt.Errorf("hsm: token %q already exists", label)
	}
	slots, err := l.ctx.GetSlotList(true)
	if err != nil {
		return wrapRV("get slot list", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		ti, err := l.ctx.GetTokenInfo(s)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			free, found = s, true
			break
		}
	}
	if !found {
		return errors.New("hsm: no free (uninitialised) token to initialise")
	}
	if err := l.ctx.InitToken(free, soPIN.Reveal(), label); err != nil {
		return wrapRV("init token", err)
	}
	slot, err := findSlot(l.ctx, label)
	if err != nil {
		return err
	}
	s, err := l.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return wrapRV("open session", err)
	}
	defer l.ctx.CloseSession(s)
	if err := l.ctx.Login(s, pkcs11.CKU_SO, soPIN.Reveal()); err != nil {
		return wrapRV("login SO", err)
	}
	defer l.ctx.Logout(s)
	return wrapRV("init PIN", l.ctx.InitPIN(s, userPIN.Reveal()))
}

// findSlot returns the slot whose token carries label.
func findSlot(ctx API, label string) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, wrapRV("get slot list", err)
	}
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && ti.Label == label {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: label %q", ErrTokenNotFound, label)
}
