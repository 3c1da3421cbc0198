package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestNoTokenFlag (review L3): a bearer token is never taken from the
// command line, where every user of the machine sees it (ps); the refusal
// says where it goes instead and does not repeat it.
func TestNoTokenFlag(t *testing.T) {
	for _, args := range [][]string{
		{"account", "list", "-token", "tok-7c1f"},
		{"account", "list", "-token=tok-7c1f"},
		{"operator", "status", "--token", "tok-7c1f"},
		{"policy", "list", "--token=tok-7c1f"},
	} {
		t.Setenv("MOONVAULT_ADDR", "https://127.0.0.1:1") // nothing is asked of a server
		var out, errOut bytes.Buffer
		code := Main(args, strings.NewReader(""), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "MOONVAULT_TOKEN") || strings.Contains(errOut.String()+out.String(), "tok-7c1f") {
			t.Errorf("%v: exit %d, %q", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if Main([]string{"account", "list", "-h"}, strings.NewReader(""), &out, &errOut); strings.Contains(out.String(), "-token") {
		t.Errorf("help still offers -token:\n%s", out.String())
	}
}
