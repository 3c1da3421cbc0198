// Package server assembles a Moon Vault node from its configuration:
// storage, seal, barrier, entropy, services, audit, TLS and the HTTP API,
// and runs it until it is told to stop.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/softhsm"
	"github.com/moonvault/moonvault/internal/httpapi"
	"github.com/moonvault/moonvault/internal/metrics"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/tee"
	"github.com/moonvault/moonvault/internal/tlsconfig"
	"github.com/moonvault/moonvault/internal/wallet"
)

// Options are what the command line decided.
type Options struct {
	Config config.Server
	// Dev initialises and unseals by itself, with a self-signed certificate.
	Dev bool
	// Out receives the human-readable start-up banner (dev mode).
	Out    io.Writer
	Logger *slog.Logger
	// Ready, when set, receives the bound address once serving.
	Ready func(addr string)
	// AuditSinks are audit sinks beyond those of the configuration (for
	// embedding, and fault-injecting sinks in tests).
	AuditSinks []audit.Sink
	// WrapHSMRandom, when set, wraps the HSM's random source before the
	// entropy mixer sees it (fault injection in tests).
	WrapHSMRandom func(HSMRandom) HSMRandom
	// Reload, when set, reads the configuration again on SIGHUP; the
	// settings that can change safely are applied (reload.go).
	Reload func() (config.Server, error)
	// LogLevel, when set, is the level of Logger, changed by a reload.
	LogLevel *slog.LevelVar
}

// HSMRandom draws n bytes from the HSM's generator.
type HSMRandom = func(ctx context.Context, n int) ([]byte, error)

// Node is one running vault.
type Node struct {
	opts    Options
	cfg     config.Server
	log     *slog.Logger
	store   storage.Backend
	hsm     *hsmConn
	rand    io.Reader
	mixer   *entropy.Mixer
	barrier *barrier.Barrier
	sealer  *sealwrap.Sealer
	Core    *core.Core
	Auth    *auth.Service
	Wallet  *wallet.Service
	Audit   *audit.Log
	API     *httpapi.API
	harden  tee.Hardening
	att     tee.Attester
	certs   *tlsconfig.Reloader
	devCert *tlsconfig.DevCert
	restore restoreState
	// auditFile is the audit file sink, whose rotation size reloads.
	auditFile *audit.FileSink
	// Metrics is the node's Prometheus registry and request observer.
	Metrics *metrics.Metrics

	runCtx    context.Context
	cancelRun context.CancelFunc
	wg        sync.WaitGroup
}

// Build wires a node without starting to serve.
func Build(ctx context.Context, opts Options) (n *Node, err error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	n = &Node{opts: opts, cfg: cfg, log: log}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	n.runCtx, n.cancelRun = context.WithCancel(context.Background())

	n.harden = tee.Harden(log)
	if cfg.RequireHardening && !n.harden.Complete() {
		return nil, errors.New("require_hardening is set and not every hardening measure could be applied (see the log)")
	}
	n.att = tee.Detect()

	if cfg.DataDir == "" {
		return nil, errors.New("data_dir is required (-data-dir)")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}

	// HSM: configured, or SoftHSM2 in dev mode when it is installed.
	if opts.Dev && cfg.HSMLib == "" {
		if lib, ok := softhsm.FindLibrary(); ok {
			hc, err := softhsm.EnsureToken(filepath.Join(cfg.DataDir, "softhsm"), "moonvault-dev")
			if err != nil {
				return nil, fmt.Errorf("dev SoftHSM2 token: %w", err)
			}
			cfg.HSMLib, cfg.HSMTokenLabel, cfg.HSMPIN = lib, hc.TokenLabel, hc.PIN
			log.Info("dev mode uses SoftHSM2 for the seal and entropy", "lib", lib, "token", hc.TokenLabel)
		} else {
			log.Warn("dev mode without SoftHSM2: Shamir seal and OS entropy (install the softhsm2 package for the HSM design)")
		}
	}
	if cfg.HSMLib != "" {
		hc := hsm.Config{Lib: cfg.HSMLib, TokenLabel: cfg.HSMTokenLabel, PIN: cfg.HSMPIN, KeyLabel: cfg.HSMKeyLabel}
		if cfg.HSMSlot != "" {
			slot, err := strconv.ParseUint(cfg.HSMSlot, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("hsm_slot %q: not a number", cfg.HSMSlot)
			}
			s := uint(slot)
			hc.Slot = &s
		}
		n.hsm = newHSMConn(hc, log)
	}
	mode := cfg.EntropyMode
	if mode == "" {
		mode = "off"
		if n.hsm != nil {
			mode = "augmentation"
		}
	}
	if mode == "augmentation" {
		src := HSMRandom(n.hsm.GenerateRandom)
		if opts.WrapHSMRandom != nil {
			src = opts.WrapHSMRandom(src)
		}
		n.mixer = entropy.NewMixer(src, log)
	} else {
		n.mixer = entropy.OS()
	}
	n.rand = n.mixer
	n.cfg = cfg

	switch cfg.Storage {
	case "postgres":
		var pg *postgres.Backend
		if pg, err = postgres.Open(ctx, cfg.PostgresURL, log); err == nil {
			// Other nodes must see these at once; everything else is read on demand.
			pg.NotifyOnly("core/", "auth/revoked/", "auth/users/", "auth/jwt-keys/", "auth/apikeys/")
			n.store = pg
		}
	default:
		n.store, err = bolt.Open(filepath.Join(cfg.DataDir, "moonvault.db"))
	}
	if err != nil {
		return nil, fmt.Errorf("open storage: %w", err)
	}
	n.barrier = barrier.New(n.store, barrier.Options{Rand: n.rand, Logger: log})
	if n.hsm != nil && cfg.SealWrapEnabled() {
		n.sealer = sealwrap.New(n.hsm)
	} else {
		n.sealer = sealwrap.New(nil)
	}

	n.Auth, err = auth.New(auth.Config{
		Issuer: "moonvault", Audience: "moonvault-api",
		AccessTTL:       config.Duration(cfg.AccessTokenTTL),
		SessionLifetime: config.Duration(cfg.SessionLifetime),
		IdleTimeout:     config.Duration(cfg.IdleTimeout),
		Subscribe:       n.barrier.Subscribe,
	}, n.barrier, n.sealer, n.rand, log)
	if err != nil {
		return nil, err
	}
	n.Metrics = n.newMetrics()
	n.Wallet = wallet.New(n.barrier, n.sealer, n.rand, wallet.Options{Logger: log, OnSign: n.Metrics.Signature})

	var sinks []audit.Sink
	auditFile := cfg.AuditFile
	if cfg.Audit != "off" && auditFile == "" && !cfg.AuditStdout && len(opts.AuditSinks) == 0 {
		// Audit is on by default (issue 13): a node with no audit setting
		// logs to its data directory; only audit = "off" turns it off.
		auditFile = filepath.Join(cfg.DataDir, "audit.log")
	}
	if auditFile != "" {
		fs, err := audit.NewFileSink(auditFile, cfg.AuditMaxBytes)
		if err != nil {
			return nil, fmt.Errorf("audit file: %w", err)
		}
		n.auditFile = fs
		sinks = append(sinks, fs)
	}
	if cfg.AuditStdout {
		sinks = append(sinks, audit.NewWriterSink(os.Stdout, "stdout"))
	}
	sinks = append(sinks, opts.AuditSinks...)
	if len(sinks) > 0 {
		// Under concurrency, at most one commit per 500 µs: a batch shares
		// one checkpoint signature and one durable write, and a lone
		// request never waits (docs/scaling.md, "Audit cost").
		if n.Audit, err = audit.New(sinks, audit.Options{Logger: log, FlushInterval: 500 * time.Microsecond}); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	} else {
		log.Warn(`audit = "off": requests are not audited`)
	}

	var autoSeal core.AutoSeal
	if n.hsm != nil {
		autoSeal = n.hsm
	}
	n.Core = core.New(core.Options{
		Storage: n.store, Barrier: n.barrier, Rand: n.rand, AutoSeal: autoSeal, Logger: log,
		Hooks: core.Hooks{
			Unsealed:     n.onUnsealed,
			Sealing:      n.onSealing,
			RootToken:    n.rootToken,
			BeforeUnseal: n.teeCheck,
			MigrateCSPs: func(ctx context.Context, b *barrier.Barrier) error {
				if _, err := n.sealer.Rewrap(ctx, b, cspPrefixes); err != nil {
					return err
				}
				return b.SetWrapper(ctx, n.sealer)
			},
			KeyringWrapper: func() barrier.Wrapper {
				if n.hsm != nil && cfg.SealWrapEnabled() {
					return n.sealer
				}
				return nil
			},
		},
	})

	if err := n.setupTLS(); err != nil {
		return nil, err
	}
	n.API = httpapi.New(httpapi.Deps{
		Core: n.Core, Auth: n.Auth, Wallet: n.Wallet, Audit: n.Audit,
		Policy:       policy.Rules{SignRequiresMFA: cfg.SignRequiresMFA, StepUpMaxAge: 10 * time.Minute},
		Entropy:      n.mixer.Stats,
		Harden:       tee.Current,
		Attester:     n.att,
		TLSPublicKey: n.tlsPublicKey,
		Rewrap:       n.rewrap,
		Logger:       log,
		MaxBody:      cfg.MaxRequestBytes,
		Operations:   n.operations(),
	})
	n.watchRestores()
	return n, nil
}

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

// cspPrefixes hold every seal-wrapped critical security parameter.
var cspPrefixes = []string{"wallet/keys/", "auth/jwt-seeds/", "auth/totp/", "audit/keys/", "sys/snapshot/"}

// Audit keys are CSPs kept behind the barrier and seal-wrapped.
const (
	auditHMACKey    = "audit/keys/hmac"
	auditSigningKey = "audit/keys/signing"
)

func (n *Node) onUnsealed(ctx context.Context, _ *barrier.Barrier) error {
	if err := n.checkRestored(ctx); err != nil {
		return err
	}
	if err := n.Auth.Start(n.runCtx); err != nil {
		return fmt.Errorf("start auth: %w", err)
	}
	if n.Audit != nil {
		hk, err := n.loadOrCreateCSP(ctx, auditHMACKey, 32)
		if err != nil {
			n.Auth.Stop()
			return err
		}
		seed, err := n.loadOrCreateCSP(ctx, auditSigningKey, ed25519.SeedSize)
		if err != nil {
			hk.Destroy()
			n.Auth.Stop()
			return err
		}
		priv := ed25519.NewKeyFromSeed(seed)
		seed.Destroy()
		pub := priv.Public().(ed25519.PublicKey)
		n.Audit.SetKeys(hk, priv, auditKeyID(pub))
	}
	return nil
}

func auditKeyID(pub ed25519.PublicKey) string {
	return fmt.Sprintf("audit-%x", pub[:8])
}

// loadOrCreateCSP reads a seal-wrapped secret, creating it from the entropy
// source on first use.
func (n *Node) loadOrCreateCSP(ctx context.Context, path string, size int) (secret.Bytes, error) {
	env, err := n.barrier.Get(ctx, path)
	if err == nil {
		return n.sealer.Unwrap(ctx, path, env)
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	k := make(secret.Bytes, size)
	if _, err := io.ReadFull(n.rand, k); err != nil {
		return nil, fmt.Errorf("generate %s: %w", path, err)
	}
	env, err = n.sealer.Wrap(ctx, path, k)
	if err != nil {
		k.Destroy()
		return nil, err
	}
	if err := n.barrier.Put(ctx, path, env); err != nil {
		k.Destroy()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	k.Destroy()
	// Read back what storage holds: when two nodes create the key at once,
	// the last write wins and both use it (storage has no compare-and-swap;
	// a node that read before the final write picks it up at its next unseal).
	env, err = n.barrier.Get(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return n.sealer.Unwrap(ctx, path, env)
}

func (n *Node) onSealing() {
	n.Auth.Stop()
	n.Wallet.Purge()
	if n.Audit != nil {
		n.Audit.ClearKeys()
	}
}

// rewrap re-wraps every CSP with the current seal (after enabling seal wrap
// or rotating the HSM key), and the keyring with it.
func (n *Node) rewrap(ctx context.Context) (int, error) {
	if n.hsm == nil || !n.cfg.SealWrapEnabled() {
		return 0, errors.New("seal wrap needs the pkcs11 seal with seal_wrap enabled")
	}
	count, err := n.sealer.Rewrap(ctx, n.barrier, cspPrefixes)
	if err != nil {
		return count, err
	}
	if err := n.barrier.SetWrapper(ctx, n.sealer); err != nil {
		return count, err
	}
	return count + 1, nil
}

func (n *Node) setupTLS() error {
	if n.opts.Dev && n.cfg.TLSCertFile == "" {
		dc, err := tlsconfig.NewDevCert(n.cfg.ListenAddress)
		if err != nil {
			return err
		}
		n.devCert = dc
		return nil
	}
	if n.cfg.TLSCertFile == "" || n.cfg.TLSKeyFile == "" {
		return errors.New("HTTPS only: set tls_cert_file and tls_key_file (-tls-cert-file, -tls-key-file), or use -dev")
	}
	r, err := tlsconfig.NewReloader(n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
	if err != nil {
		return err
	}
	n.certs = r
	return nil
}

func (n *Node) currentCert() *tls.Certificate {
	if n.devCert != nil {
		return &n.devCert.Cert
	}
	return n.certs.Current()
}

func (n *Node) tlsPublicKey() ([]byte, error) { return tlsconfig.PublicKeyDER(n.currentCert()) }

// ReloadTLS re-reads the certificate files (SIGHUP).
func (n *Node) ReloadTLS() error {
	if n.certs == nil {
		return nil
	}
	return n.certs.Reload()
}

// Serve listens with TLS and serves until ctx ends, then shuts down
// gracefully, seals (zeroizing keys) and closes storage.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.currentCert(), nil }
	tc, err := tlsconfig.Server(n.cfg.TLSMinVersion, getCert)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           n.API,
		TLSConfig:         tc,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	if n.hsm != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.Core.RunAutoUnseal(n.runCtx, time.Second, 30*time.Second)
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, tc)) }()
	if n.opts.Ready != nil {
		n.opts.Ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		n.close()
		return err
	case <-ctx.Done():
	}
	n.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	n.close()
	return nil
}

func (n *Node) close() {
	if n.cancelRun != nil {
		n.cancelRun()
	}
	n.wg.Wait()
	// Close the audit log while its signing key is still loaded, so the
	// final checkpoint is signed; then seal, which wipes every key.
	if n.Audit != nil {
		_ = n.Audit.Close()
	}
	if n.Core != nil {
		n.Core.Seal()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
	if n.hsm != nil {
		n.hsm.Close()
	}
}

// Run builds the node, prepares dev mode when asked, and serves until
// SIGINT/SIGTERM; SIGHUP reloads the TLS certificate and the settings
// that can change safely (reload.go).
func Run(ctx context.Context, opts Options) error {
	n, err := Build(ctx, opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.ListenAddress)
	if err != nil {
		n.close()
		return fmt.Errorf("listen: %w", err)
	}
	if opts.Dev {
		if err := n.devSetup(ctx, ln.Addr().String()); err != nil {
			_ = ln.Close()
			n.close()
			return err
		}
	}
	sigctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			n.reload()
		}
	}()
	n.log.Info("moonvault listening", "address", ln.Addr().String(), "tls_min_version", n.cfg.TLSMinVersion, "storage", n.cfg.Storage, "seal", n.Core.SealType())
	return n.Serve(sigctx, ln)
}
