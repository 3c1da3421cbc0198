//go:build !linux

package tee

// Detect reports no TEE outside Linux: the guest drivers are Linux-only.
func Detect() Attester { return noneAttester{} }
