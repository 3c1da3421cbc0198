package console

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// TestVendoredFiles: the vendored libraries are the npm releases named in
// assets/vendor/README.md, unmodified, with their licenses.
func TestVendoredFiles(t *testing.T) {
	want := map[string]string{
		"vendor/htm-preact.mjs": "72284e8e9079c87817145df1110f74e8a2aa040b2fc384922e18dfcb46fc1fd7",
		"vendor/uqr.mjs":        "7f0e61c2f13bb3724edee7bfb876e13c54ac9ee4fcfa283c9fa93cfb1241c325",
	}
	readme, err := fs.ReadFile(Files(), "vendor/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, sum := range want {
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: SHA-256 %x, want %s (update vendor/README.md and this test together)", name, got, sum)
		}
		if !strings.Contains(string(readme), sum) {
			t.Errorf("vendor/README.md does not list %s", sum)
		}
	}
	for _, lic := range []string{"vendor/LICENSE.htm", "vendor/LICENSE.preact", "vendor/LICENSE.uqr"} {
		if _, err := fs.Stat(Files(), lic); err != nil {
			t.Errorf("license missing: %v", err)
		}
	}
}

// TestNoInlineScriptOrStyle: the CSP allows no inline script or style, so
// none may be written: no <script> without src, no style attribute, no
// <style>, no on* handler attribute in HTML, no eval in our modules.
func TestNoInlineScriptOrStyle(t *testing.T) {
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files(), p)
		if err != nil {
			return err
		}
		s := string(b)
		switch {
		case strings.HasSuffix(p, ".html"):
			for _, bad := range []string{"style=", "<style", " onclick=", " onload=", "javascript:"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s contains %q", p, bad)
				}
			}
			for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(s, -1) {
				if !strings.Contains(m, " src=") {
					t.Errorf("%s: inline script %s", p, m)
				}
			}
		case strings.HasSuffix(p, ".js"):
			for _, bad := range []string{"eval(", "new Function", "innerHTML", "dangerouslySetInnerHTML", "style=", "localStorage", "sessionStorage"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s contains %q", p, bad)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
