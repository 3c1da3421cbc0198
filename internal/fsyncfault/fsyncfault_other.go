//go:build !linux || !(amd64 || arm64)

package fsyncfault

import "errors"

// Install cannot inject the fault on this platform.
func Install() error { return errors.New(unsupported) }
