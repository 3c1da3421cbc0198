package httpapi

import (
	"bytes"
	"testing"

	"github.com/moonvault/moonvault/internal/errkind"
)

// FuzzLoginBody runs the login endpoint's decoder, the one every JSON body
// goes through, on untrusted bytes: it never panics, accepts only a body
// with credentials, refuses with an Invalid error, and never echoes the
// password in the error.
func FuzzLoginBody(f *testing.F) {
	f.Add([]byte(`{"username":"alice","password":"correct horse battery","totp":"123456"}`))
	f.Add([]byte(`{"username":"alice","password":"hunter2hunter2","admin":true}`))
	f.Add([]byte(`{"username":"alice","password":"p"} {}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req loginBody
		err := decodeJSON(body, &req, false)
		if err == nil {
			err = req.check()
		}
		if err == nil {
			if req.Username == "" || req.Password == "" {
				t.Fatalf("accepted a body without credentials: %q", body)
			}
			return
		}
		if errkind.Of(err) != errkind.Invalid {
			t.Fatalf("error of kind %v: %v", errkind.Of(err), err)
		}
		if pw := req.Password.Reveal(); len(pw) >= 4 && bytes.Contains([]byte(err.Error()), []byte(pw)) {
			t.Fatalf("error echoes the password: %v", err)
		}
	})
}
