//go:build !linux || !(amd64 || arm64)

package fsyncfault

import "errors"

// Install cannot inject the fault on this platform (test support: not a
// domain error with a kind).
func Install() error {
	return errors.New("fsyncfault: needs seccomp on linux/amd64 or linux/arm64")
}
