// Package tee makes the vault process live up to running inside a Trusted
// Execution Environment: it hardens the process (no core dumps, not dumpable,
// memory locked), produces attestation reports bound to the server's TLS key
// and a caller nonce (AMD SEV-SNP, Intel TDX), verifies such reports, and
// decides whether a TEE is required before unsealing.
package tee
