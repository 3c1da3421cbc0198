//go:build !linux || !(amd64 || arm64)

package fsyncfault

// Install reports ErrUnsupported on this platform.
func Install() error { return ErrUnsupported }
