// Package testdeps is the one rule for a test whose dependency (a browser,
// node and ethers, a kernel feature) is missing on this machine: in CI
// (CI=true) the test fails, because CI must run it; on a developer's
// machine it is skipped with the reason. SoftHSM2 and PostgreSQL are not
// optional anywhere: their helpers (hsmtest, pgtest) always fail instead.
package testdeps

import (
	"fmt"
	"os"
	"testing"
)

// Missing ends t because a dependency is missing: a failure with CI=true,
// a skip otherwise. why says what is missing and how to get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: this test must run)", why)
	}
	t.Skip(why)
}
