//go:build !cgo

package secp

// Without cgo, go-ethereum's secp256k1 has no constant-time
// multiplication (its ScalarMult panics) and its crypto.Sign falls back to
// decred's variable-time code. Building Moon Vault without cgo is an error
// here, at compile time, rather than a weaker signer at run time (the
// PKCS#11 seal needs cgo too).
var _ = internalSecpNeedsCgo // undefined on purpose: build with CGO_ENABLED=1
