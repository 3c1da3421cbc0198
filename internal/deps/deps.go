//go:build moonvault_deps

// Package deps pins the project's third-party modules while the packages
// that use them are written; it is never built.
package deps

import (
	_ "github.com/ethereum/go-ethereum/core/types"
	_ "github.com/ethereum/go-ethereum/signer/core/apitypes"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/google/go-sev-guest/client"
	_ "github.com/google/go-sev-guest/verify"
	_ "github.com/google/go-tdx-guest/client"
	_ "github.com/google/go-tdx-guest/verify"
	_ "github.com/hashicorp/hcl/v2/hclsimple"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/miekg/pkcs11"
	_ "github.com/pquerna/otp/totp"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/crypto/hkdf"
	_ "golang.org/x/sys/unix"
	_ "k8s.io/api/apps/v1"
	_ "sigs.k8s.io/yaml"
)
