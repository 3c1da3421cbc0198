package hsm

import (
	"fmt"

	"github.com/miekg/pkcs11"
)

// Probe checks at start-up that path is a PKCS#11 library this process can
// load (dlopen and C_GetFunctionList), without initialising it or opening a
// session: a missing or broken library is a configuration mistake, an
// unreachable token may be an outage.
func Probe(path string) error {
	registry.Lock()
	_, loaded := registry.libs[path]
	registry.Unlock()
	if loaded {
		return nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return fmt.Errorf("%s is not a PKCS#11 library this process can load (missing, wrong architecture, or a missing dependency)", path)
	}
	ctx.Destroy()
	return nil
}
