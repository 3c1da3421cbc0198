package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/hsm/softhsm"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/secret"
)

// devUnsealKey holds the single Shamir share of a dev vault so that a dev
// data directory unseals again after a restart. Dev mode only: a real
// deployment never writes a share to disk.
const devUnsealKey = "dev-unseal-key"

// devHSM gives dev mode a SoftHSM2 token in the data dir when SoftHSM2 is
// installed, so that dev mode runs the HSM design: pkcs11 seal, seal wrap
// and HSM entropy.
func (n *Node) devHSM() error {
	lib, ok := softhsm.FindLibrary()
	if !ok {
		n.log.Warn("dev mode without SoftHSM2: Shamir seal and OS entropy (install the softhsm2 package for the HSM design)")
		return nil
	}
	hc, err := softhsm.EnsureToken(filepath.Join(n.cfg.DataDir, "softhsm"), "moonvault-dev")
	if err != nil {
		return fmt.Errorf("dev SoftHSM2 token: %w", err)
	}
	n.cfg.HSM = &config.HSM{Lib: lib, TokenLabel: hc.TokenLabel, PIN: hc.PIN, KeyLabel: n.opts.Config.HSMKeyLabel}
	n.log.Info("dev mode uses SoftHSM2 for the seal and entropy", "lib", lib, "token", hc.TokenLabel)
	return nil
}

// devSetup initialises and unseals the vault, creates the admin user and
// prints how to reach the server.
func (n *Node) devSetup(ctx context.Context, addr string) error {
	st, err := n.Core.Status(ctx)
	if err != nil {
		return err
	}
	keyPath := filepath.Join(n.cfg.DataDir, devUnsealKey)
	var rootToken string
	if !st.Initialized {
		res, err := n.Core.Init(ctx, core.InitRequest{SecretShares: 1, SecretThreshold: 1, RecoveryShares: 1, RecoveryThreshold: 1})
		if err != nil {
			return fmt.Errorf("dev init: %w", err)
		}
		rootToken = res.RootToken
		if len(res.Keys) == 1 {
			if err := os.WriteFile(keyPath, []byte(base64.StdEncoding.EncodeToString(res.Keys[0])), 0o600); err != nil {
				return fmt.Errorf("dev: save unseal key: %w", err)
			}
			if _, err := n.Core.Unseal(ctx, res.Keys[0]); err != nil && !errors.Is(err, core.ErrUnsealRefused) {
				return fmt.Errorf("dev unseal: %w", err)
			}
		}
		for _, k := range append(res.Keys, res.RecoveryKeys...) {
			k.Destroy()
		}
	} else if st.Sealed {
		if n.hsm != nil {
			if err := n.Core.AutoUnseal(ctx); err != nil && !errors.Is(err, core.ErrUnsealRefused) {
				return fmt.Errorf("dev auto-unseal: %w", err)
			}
		} else {
			raw, err := os.ReadFile(keyPath) // #nosec G304 -- inside the dev data dir
			if err != nil {
				return fmt.Errorf("dev: this data dir has no saved unseal key: %w", err)
			}
			share, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
			secret.Wipe(raw)
			if err != nil {
				return errors.New("dev: saved unseal key is corrupt")
			}
			_, err = n.Core.Unseal(ctx, share)
			secret.Wipe(share)
			if err != nil && !errors.Is(err, core.ErrUnsealRefused) {
				return fmt.Errorf("dev unseal: %w", err)
			}
		}
	}
	if n.Core.Sealed() {
		// require_tee outside a TEE: serve sealed (health 503); the log
		// already says why.
		fmt.Fprintf(n.out(), "\nMoon Vault dev server at https://%s is SEALED: a TEE is required (require_tee) and none was detected.\n\n", addr)
		return nil
	}

	password := secret.String(os.Getenv("MOONVAULT_DEV_ADMIN_PASSWORD"))
	generated := false
	if _, err := n.Auth.GetUser(ctx, "admin"); errors.Is(err, auth.ErrNotFound) {
		if password == "" {
			b := make([]byte, 18)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			password = secret.String(base64.RawURLEncoding.EncodeToString(b))
			generated = true
		}
		if _, err := n.Auth.CreateUser(ctx, "admin", password, identity.RoleAdmin); err != nil {
			return fmt.Errorf("dev: create admin user: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("dev: look up admin user: %w", err)
	}

	caPath := filepath.Join(n.cfg.DataDir, "dev-ca.pem")
	if n.devCert != nil {
		if err := n.devCert.WritePEM(caPath); err != nil {
			return err
		}
	}
	out := n.out()
	fmt.Fprintf(out, "\nMoon Vault dev server (do not use in production)\n\n")
	fmt.Fprintf(out, "  Address:            https://%s\n", addr)
	fmt.Fprintf(out, "  Web console:        https://%s/ui/\n", addr)
	fmt.Fprintf(out, "  Seal:               %s\n", n.Core.SealType())
	fmt.Fprintf(out, "  Data dir:           %s\n", n.cfg.DataDir)
	if n.cfg.Audit.File != "" {
		fmt.Fprintf(out, "  Audit log:          %s\n", n.cfg.Audit.File)
	}
	if n.devCert != nil {
		fmt.Fprintf(out, "  TLS certificate:    %s\n", caPath)
		fmt.Fprintf(out, "  SHA-256 fingerprint: %s\n", n.devCert.Fingerprint)
	}
	fmt.Fprintf(out, "  Admin user:         admin\n")
	if generated {
		// Dev mode prints the generated password once, as Vault dev mode prints its root token.
		fmt.Fprintf(out, "  Admin password:     %s\n", password.Reveal())
	} else {
		fmt.Fprintf(out, "  Admin password:     (from MOONVAULT_DEV_ADMIN_PASSWORD or the first run)\n")
	}
	if rootToken != "" {
		fmt.Fprintf(out, "  Root token (1 h):   %s\n", rootToken)
	}
	fmt.Fprintf(out, "\n  export MOONVAULT_ADDR=https://%s\n  export MOONVAULT_CACERT=%s\n  moonvault login -username admin\n\n", addr, caPath)
	return nil
}

func (n *Node) out() io.Writer {
	if n.opts.Out == nil {
		return os.Stderr
	}
	return n.opts.Out
}
