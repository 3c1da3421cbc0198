package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/httpapi"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/signpolicy"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/tee"
	"github.com/moonvault/moonvault/internal/tlsconfig"
	"github.com/moonvault/moonvault/internal/wallet"
)

// The steps of Build, in order. Each opens one thing or fails with an error
// naming the setting at fault.

func (n *Node) hardenProcess(context.Context) error {
	h := tee.Harden(n.log)
	if n.cfg.RequireHardening && !h.Complete() {
		return config.Wrong("require_hardening", "is set and not every hardening measure could be applied (see the log above)")
	}
	n.att = tee.Detect()
	return nil
}

func (n *Node) loadTLS(context.Context) error {
	if n.cfg.TLS.CertFile == "" { // dev mode (Resolve refuses it otherwise)
		dc, err := tlsconfig.NewDevCert(n.cfg.ListenAddress)
		n.devCert = dc
		return err
	}
	r, err := tlsconfig.NewReloader(n.cfg.TLS.CertFile, n.cfg.TLS.KeyFile)
	if err != nil {
		if cerr := config.CheckKeyPair(n.cfg.TLS.CertFile, n.cfg.TLS.KeyFile); cerr != nil {
			return cerr // names the file at fault
		}
		return config.Wrong("tls_cert_file", "%v", err)
	}
	n.certs = r
	return nil
}

// connectHSM checks that the PKCS#11 library loads; the token itself is
// opened on first use and again after a failure (an unreachable token is an
// outage, not a misconfiguration: the node serves sealed meanwhile).
func (n *Node) connectHSM(context.Context) error {
	if n.opts.Dev && n.cfg.HSM == nil {
		if err := n.devHSM(); err != nil {
			return err
		}
	}
	h := n.cfg.HSM
	if h == nil {
		return nil
	}
	if err := hsm.Probe(h.Lib); err != nil {
		return config.Wrong("hsm_lib", "%v", err)
	}
	s, err := seal.NewPKCS11(seal.Config{
		HSM:       hsm.Config{Lib: h.Lib, TokenLabel: h.TokenLabel, Slot: h.Slot, PIN: h.PIN, WrapAPI: n.opts.WrapHSMAPI},
		Mechanism: seal.Mechanism(h.Mechanism), KeyLabel: h.KeyLabel, HMACKeyLabel: h.HMACKeyLabel, OAEPHash: h.OAEPHash,
		SigningKeyLabel: h.SigningKeyLabel,
	}, n.log)
	if err != nil {
		return config.Wrong("hsm_mechanism", "%v", err)
	}
	n.hsm = s
	return nil
}

func (n *Node) openEntropy(context.Context) error {
	if n.hsm != nil && (n.cfg.EntropyAugmented || n.cfg.EntropyAuto) {
		src := HSMRandom(n.hsm.GenerateRandom)
		if n.opts.WrapHSMRandom != nil {
			src = n.opts.WrapHSMRandom(src)
		}
		n.mixer = entropy.NewMixer(src, n.log)
	} else {
		n.mixer = entropy.OS()
	}
	n.rand = n.mixer
	if n.hsm != nil {
		n.hsm.SetRand(n.mixer) // rsa_oaep's data keys are CSPs too
	}
	return nil
}

// storageTimeout bounds the start-up wait for PostgreSQL (connect and
// schema migration); the URL's connect_timeout bounds each attempt.
const storageTimeout = 30 * time.Second

func (n *Node) openStorage(ctx context.Context) error {
	switch n.cfg.Storage.Kind {
	case config.StoragePostgres:
		ctx, cancel := context.WithTimeout(ctx, storageTimeout)
		defer cancel()
		pg, err := postgres.Open(ctx, n.cfg.Storage.PostgresURL.Reveal(), n.log)
		if err != nil {
			return config.Wrong("postgres_url", "cannot use the database: %v", err)
		}
		// Other nodes must see these at once; everything else is read on demand.
		pg.NotifyOnly(slices.Concat(core.NotifyPrefixes(), auth.NotifyPrefixes(), []string{signpolicy.PolicyPrefix})...)
		n.store = pg
	default:
		if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
			return config.Wrong("data_dir", "cannot create %s: %v", n.cfg.DataDir, errors.Unwrap(err))
		}
		b, err := bolt.Open(filepath.Join(n.cfg.DataDir, "moonvault.db"))
		if err != nil {
			return config.Wrong("data_dir", "cannot open the database in %s: %v", n.cfg.DataDir, err)
		}
		n.store = b
	}
	n.barrier = barrier.New(n.store, barrier.Options{Rand: n.rand, Logger: n.log})
	return nil
}

func (n *Node) newServices(context.Context) (err error) {
	n.sealer = sealwrap.New(nil)
	if n.sealWrapped() {
		n.sealer = sealwrap.New(n.hsm)
	}
	n.Auth, err = auth.New(auth.Config{
		Issuer: "moonvault", Audience: "moonvault-api",
		AccessTTL: n.cfg.AccessTokenTTL, SessionLifetime: n.cfg.SessionLifetime, IdleTimeout: n.cfg.IdleTimeout,
		Subscribe: n.barrier.Subscribe,
	}, n.barrier, n.sealer, n.rand, n.log)
	n.Metrics = n.newMetrics()
	n.Provenance = provenance.NewSigner(func(ctx context.Context) (secret.Bytes, error) {
		return n.loadOrCreateCSP(ctx, provenanceSigningKey, ed25519.SeedSize)
	})
	n.Wallet = wallet.New(n.barrier, n.sealer, n.rand, wallet.Options{Logger: n.log, OnSign: n.Metrics.Signature, Provenance: n.Provenance,
		// bbolt: this process holds the file's lock, so it alone writes.
		// Any other backend may be shared by nodes: no account cache.
		ExclusiveStorage: n.cfg.Storage.Kind == config.StorageBolt})
	if err != nil {
		return err
	}
	return n.newPolicies()
}

// provenanceSigningKey is the seed of the Ed25519 key that signs account
// provenance records: a seal-wrapped CSP, created on first use.
const provenanceSigningKey = "sys/provenance/signing-key"

func (n *Node) sealWrapped() bool { return n.hsm != nil && n.cfg.SealWrap }

// cspPrefixes hold every seal-wrapped critical security parameter.
func cspPrefixes() []string {
	return slices.Concat(wallet.CSPPrefixes(), []string{audit.CSPPrefix, path.Dir(snapshotSigningKey) + "/", path.Dir(provenanceSigningKey) + "/"}, auth.CSPPrefixes())
}

func (n *Node) openAudit(context.Context) error {
	a := n.cfg.Audit
	if a.Off {
		n.log.Warn(`audit = "off": requests are not audited`)
		if len(n.opts.AuditSinks) == 0 {
			return nil
		}
	}
	file := a.File
	if a.Defaulted && len(n.opts.AuditSinks) > 0 && !n.opts.Dev {
		file = "" // sinks given by the embedder stand in for the default file
	}
	// Dev mode audits like a real server, into the data dir (which may have
	// come after Resolve), so that what a newcomer does shows in the log.
	if file == "" && !a.Off && !a.Stdout && n.cfg.DataDir != "" && (n.opts.Dev || len(n.opts.AuditSinks) == 0) {
		file = filepath.Join(n.cfg.DataDir, "audit.log")
	}
	var sinks []audit.Sink
	if file != "" {
		fs, err := audit.NewFileSink(file, a.MaxBytes)
		if err != nil {
			return config.Wrong("audit_file", "%v", err)
		}
		n.auditFile = fs
		sinks = append(sinks, fs)
	}
	if a.Stdout {
		sinks = append(sinks, audit.NewWriterSink(os.Stdout, "stdout"))
	}
	sinks = append(sinks, n.opts.AuditSinks...)
	if len(sinks) == 0 {
		return config.Wrong("audit_file", `is required: the audit log is on by default (or set audit = "off")`)
	}
	// Under concurrency, at most one commit per 2 ms, sooner when every
	// request still to record a line is in the batch: a batch shares one
	// checkpoint signature and one durable write, and a lone request never
	// waits (docs/scaling.md, "Audit cost").
	var err error
	if n.Audit, err = audit.New(sinks, audit.Options{Logger: n.log, FlushInterval: auditFlushInterval, CountCallers: true}); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func (n *Node) newCore(context.Context) error {
	var autoSeal core.AutoSeal
	if n.hsm != nil {
		autoSeal = n.hsm
	}
	n.Core = core.New(core.Options{
		Storage: n.store, Barrier: n.barrier, Rand: n.rand, AutoSeal: autoSeal, Logger: n.log,
		Hooks: core.Hooks{
			Unsealed:     n.onUnsealed,
			Sealing:      n.onSealing,
			RootToken:    n.rootToken,
			BeforeUnseal: n.teeCheck,
			MigrateCSPs: func(ctx context.Context, b *barrier.Barrier) error {
				if _, err := n.sealer.Rewrap(ctx, b, cspPrefixes()); err != nil {
					return err
				}
				return b.SetWrapper(ctx, n.sealer)
			},
			KeyringWrapper: func() barrier.Wrapper {
				if n.sealWrapped() {
					return n.sealer
				}
				return nil
			},
		},
	})
	return nil
}

// auditFlushInterval spaces audit commits under load (audit.Options).
const auditFlushInterval = 2 * time.Millisecond

func (n *Node) newAPI(context.Context) error {
	n.API = httpapi.New(httpapi.Deps{
		Core: n.Core, Auth: n.Auth, Wallet: n.Wallet, Audit: n.Audit,
		Policy:         policy.Rules{SignRequiresMFA: n.cfg.SignRequiresMFA, StepUpMaxAge: 10 * time.Minute, Quorum: n.cfg.PolicyChangeApprovals > 0},
		Entropy:        n.mixer.Stats,
		Harden:         tee.Current,
		Attester:       n.att,
		TLSPublicKey:   n.tlsPublicKey,
		Rewrap:         n.rewrap,
		Logger:         n.log,
		MaxBody:        n.cfg.MaxRequestBytes,
		Limits:         httpapi.Limits{Now: n.opts.RateLimitClock},
		Operations:     n.operations(),
		TrustedProxies: n.cfg.TrustedProxies,
		Provenance:     n.Provenance,
		Policies:       n.apiPolicies(),
	})
	return nil
}

// Hooks the core calls.

func (n *Node) teeCheck() error {
	if err := (tee.Policy{RequireTEE: n.cfg.RequireTEE}).Check(n.att); err != nil {
		n.log.Error("refusing to unseal: a TEE is required (require_tee) and none was detected", "detected", n.att.Kind())
		return err
	}
	return nil
}

func (n *Node) rootToken(ctx context.Context) (string, error) {
	t, err := n.Auth.IssueRootToken(ctx)
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

func (n *Node) onUnsealed(ctx context.Context, _ *barrier.Barrier) error {
	// Nothing read before the seal (or a restore while sealed) is served
	// after it: onSealing purged too, but a read between that purge and
	// the barrier's seal could have cached a record.
	n.Wallet.Purge()
	if err := n.checkRestored(ctx); err != nil {
		return err
	}
	if err := n.Auth.Start(n.runCtx); err != nil {
		return fmt.Errorf("start auth: %w", err)
	}
	if n.Audit != nil {
		if err := n.Audit.LoadKeys(ctx, n.loadOrCreateCSP); err != nil {
			n.Auth.Stop()
			return err
		}
	}
	n.startPolicies(ctx)
	return nil
}

func (n *Node) loadOrCreateCSP(ctx context.Context, path string, size int) (secret.Bytes, error) {
	return n.sealer.LoadOrCreate(ctx, n.barrier, n.rand, path, size)
}

func (n *Node) onSealing() {
	n.stopPolicies()
	n.Auth.Stop()
	n.Wallet.Purge()
	n.Provenance.Clear()
	if n.Audit != nil {
		n.Audit.ClearKeys()
	}
}

var errRewrapUnavailable = errkind.New(errkind.Invalid, "unsupported", "seal wrap needs the pkcs11 seal (hsm_lib) with seal_wrap enabled")

// rewrap re-wraps every CSP with the current seal (after enabling seal wrap,
// a new hsm_key_label or another hsm_mechanism), and the keyring and the
// root key with it.
func (n *Node) rewrap(ctx context.Context) (int, error) {
	if !n.sealWrapped() {
		return 0, errRewrapUnavailable
	}
	if err := n.Core.RewrapRootKey(ctx); err != nil {
		return 0, err
	}
	count, err := n.sealer.Rewrap(ctx, n.barrier, cspPrefixes())
	if err != nil {
		return count, err
	}
	if err := n.barrier.SetWrapper(ctx, n.sealer); err != nil {
		return count, err
	}
	return count + 1, nil
}
