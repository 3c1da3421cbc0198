package hsmtest

import (
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/hsm"
)

// Faults injects failures into the real library calls of every Module
// opened with Config.WrapAPI = f.Wrap. It models a token that disappears:
// after Unplug, every call on a Module opened before fails with
// CKR_DEVICE_REMOVED for good (its sessions and handles died with the
// device, as on real hardware), and opening a new Module fails with
// CKR_TOKEN_NOT_PRESENT until Plug. Only a Module opened after Plug works
// again, so a caller that never reopens stays broken. FailNext makes the
// next call of one function fail once with a given return code. Safe for
// concurrent use.
type Faults struct {
	mu        sync.Mutex
	gen       int  // Modules wrapped in an older generation are dead
	unplugged bool // the token is absent
	unplugAt  map[string]bool
	failNext  map[string]pkcs11.Error
	opens     int
	calls     map[string]int
}

// NewFaults returns a Faults with the token plugged in.
func NewFaults() *Faults {
	return &Faults{unplugAt: map[string]bool{}, failNext: map[string]pkcs11.Error{}, calls: map[string]int{}}
}

// Wrap is a Config.WrapAPI; each call (one per hsm.Open) counts as an open.
func (f *Faults) Wrap(next hsm.API) hsm.API {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	return &faultAPI{next: next, f: f, gen: f.gen}
}

// Opens is how many Modules were opened through Wrap.
func (f *Faults) Opens() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens
}

// Calls is how many times the library function op (e.g. "Encrypt") was
// called through a wrapper.
func (f *Faults) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Unplug removes the token now.
func (f *Faults) Unplug() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unplugLocked()
}

func (f *Faults) unplugLocked() {
	f.unplugged = true
	f.gen++
}

// UnplugAt removes the token when op (e.g. "Encrypt", "GenerateRandom") is
// next called: that call is the first to fail, mid-operation.
func (f *Faults) UnplugAt(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unplugAt[op] = true
}

// Plug puts the token back: Modules opened from now on work.
func (f *Faults) Plug() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unplugged = false
	clear(f.unplugAt)
}

// FailNext makes the next call of op fail once with rv.
func (f *Faults) FailNext(op string, rv uint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[op] = pkcs11.Error(rv)
}

// check runs before every call: nil lets it through.
func (f *Faults) check(gen int, op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.unplugAt[op] {
		delete(f.unplugAt, op)
		f.unplugLocked()
	}
	if rv, ok := f.failNext[op]; ok {
		delete(f.failNext, op)
		return rv
	}
	switch {
	case gen < f.gen:
		return pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED)
	case f.unplugged:
		return pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
	}
	return nil
}

type faultAPI struct {
	next hsm.API
	f    *Faults
	gen  int
}

func (a *faultAPI) GetSlotList(tokenPresent bool) ([]uint, error) {
	if err := a.f.check(a.gen, "GetSlotList"); err != nil {
		return nil, err
	}
	return a.next.GetSlotList(tokenPresent)
}

func (a *faultAPI) GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error) {
	if err := a.f.check(a.gen, "GetTokenInfo"); err != nil {
		return pkcs11.TokenInfo{}, err
	}
	return a.next.GetTokenInfo(slotID)
}

func (a *faultAPI) GetMechanismList(slotID uint) ([]*pkcs11.Mechanism, error) {
	if err := a.f.check(a.gen, "GetMechanismList"); err != nil {
		return nil, err
	}
	return a.next.GetMechanismList(slotID)
}

func (a *faultAPI) OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error) {
	if err := a.f.check(a.gen, "OpenSession"); err != nil {
		return 0, err
	}
	return a.next.OpenSession(slotID, flags)
}

func (a *faultAPI) CloseSession(sh pkcs11.SessionHandle) error {
	// Closing is always let through, so that sessions are not leaked in
	// the real library while the fake device is away.
	return a.next.CloseSession(sh)
}

func (a *faultAPI) Login(sh pkcs11.SessionHandle, userType uint, pin string) error {
	if err := a.f.check(a.gen, "Login"); err != nil {
		return err
	}
	return a.next.Login(sh, userType, pin)
}

func (a *faultAPI) GenerateRandom(sh pkcs11.SessionHandle, length int) ([]byte, error) {
	if err := a.f.check(a.gen, "GenerateRandom"); err != nil {
		return nil, err
	}
	return a.next.GenerateRandom(sh, length)
}

func (a *faultAPI) GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	if err := a.f.check(a.gen, "GenerateKey"); err != nil {
		return 0, err
	}
	return a.next.GenerateKey(sh, m, temp)
}

func (a *faultAPI) GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	if err := a.f.check(a.gen, "GenerateKeyPair"); err != nil {
		return 0, 0, err
	}
	return a.next.GenerateKeyPair(sh, m, public, private)
}

func (a *faultAPI) DestroyObject(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error {
	if err := a.f.check(a.gen, "DestroyObject"); err != nil {
		return err
	}
	return a.next.DestroyObject(sh, oh)
}

func (a *faultAPI) GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, at []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	if err := a.f.check(a.gen, "GetAttributeValue"); err != nil {
		return nil, err
	}
	return a.next.GetAttributeValue(sh, o, at)
}

func (a *faultAPI) FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error {
	if err := a.f.check(a.gen, "FindObjectsInit"); err != nil {
		return err
	}
	return a.next.FindObjectsInit(sh, temp)
}

func (a *faultAPI) FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error) {
	if err := a.f.check(a.gen, "FindObjects"); err != nil {
		return nil, false, err
	}
	return a.next.FindObjects(sh, max)
}

func (a *faultAPI) FindObjectsFinal(sh pkcs11.SessionHandle) error {
	if err := a.f.check(a.gen, "FindObjectsFinal"); err != nil {
		return err
	}
	return a.next.FindObjectsFinal(sh)
}

func (a *faultAPI) EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := a.f.check(a.gen, "EncryptInit"); err != nil {
		return err
	}
	return a.next.EncryptInit(sh, m, o)
}

func (a *faultAPI) Encrypt(sh pkcs11.SessionHandle, message []byte) ([]byte, error) {
	if err := a.f.check(a.gen, "Encrypt"); err != nil {
		return nil, err
	}
	return a.next.Encrypt(sh, message)
}

func (a *faultAPI) DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := a.f.check(a.gen, "DecryptInit"); err != nil {
		return err
	}
	return a.next.DecryptInit(sh, m, o)
}

func (a *faultAPI) Decrypt(sh pkcs11.SessionHandle, cipher []byte) ([]byte, error) {
	if err := a.f.check(a.gen, "Decrypt"); err != nil {
		return nil, err
	}
	return a.next.Decrypt(sh, cipher)
}

func (a *faultAPI) SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := a.f.check(a.gen, "SignInit"); err != nil {
		return err
	}
	return a.next.SignInit(sh, m, o)
}

func (a *faultAPI) Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error) {
	if err := a.f.check(a.gen, "Sign"); err != nil {
		return nil, err
	}
	return a.next.Sign(sh, message)
}

func (a *faultAPI) VerifyInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, key pkcs11.ObjectHandle) error {
	if err := a.f.check(a.gen, "VerifyInit"); err != nil {
		return err
	}
	return a.next.VerifyInit(sh, m, key)
}

func (a *faultAPI) Verify(sh pkcs11.SessionHandle, data []byte, signature []byte) error {
	if err := a.f.check(a.gen, "Verify"); err != nil {
		return err
	}
	return a.next.Verify(sh, data, signature)
}
