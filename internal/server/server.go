// Package server wires a Moon Vault node from its validated configuration:
// storage, HSM, entropy, barrier, seal wrap, services, audit, core, TLS and
// the HTTP API (wire.go), and runs it until it is told to stop. It decides
// nothing itself: each concern lives in the package named for it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/connpark"
	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/httpapi"
	"github.com/moonvault/moonvault/internal/metrics"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/signpolicy"
	"github.com/moonvault/moonvault/internal/storage"
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
	// WrapHSMAPI, when set, wraps the PKCS#11 library calls (fault
	// injection in tests: hsmtest.Faults).
	WrapHSMAPI func(hsm.API) hsm.API
	// RateLimitClock, when set, is the clock of the per-address limits of
	// the unauthenticated routes (tests stop it; nil is time.Now).
	RateLimitClock func() time.Time
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
	opts Options
	// settings are the settings as given (file, env, flags), compared with
	// a reloaded configuration; cfg is their validated, typed form.
	settings config.Server
	cfg      *config.Node
	log      *slog.Logger
	store    storage.Backend
	hsm      *seal.PKCS11
	rand     io.Reader
	mixer    *entropy.Mixer
	barrier  *barrier.Barrier
	sealer   *sealwrap.Sealer
	Core     *core.Core
	Auth     *auth.Service
	Wallet   *wallet.Service
	// Provenance signs the provenance record of every account created.
	Provenance *provenance.Signer
	Audit      *audit.Log
	API        *httpapi.API
	att        tee.Attester
	certs      *tlsconfig.Reloader
	devCert    *tlsconfig.DevCert
	restore    restoreState
	// auditFile is the audit file sink, whose rotation size reloads.
	auditFile *audit.FileSink
	// Metrics is the node's Prometheus registry and request observer.
	Metrics *metrics.Metrics
	// Policies and Approvals: transaction policies (policies.go).
	Policies   *signpolicy.Engine
	Approvals  *approval.Manager
	policyMu   sync.Mutex
	policyLoop *policyLoop

	runCtx    context.Context
	cancelRun context.CancelFunc
	wg        sync.WaitGroup

	// testRestoreStaged, when set, runs once a restore's snapshot is
	// staged, before the switch (tests change the vault meanwhile).
	testRestoreStaged func()
}

// Build validates the configuration and wires a node without serving. Any
// error names the setting to fix, and whatever was opened is closed again.
func Build(ctx context.Context, opts Options) (*Node, error) {
	cfg, err := opts.Config.Resolve(config.Mode{Dev: opts.Dev})
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, settings: opts.Config, cfg: cfg, log: opts.Logger}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.runCtx, n.cancelRun = context.WithCancel(context.Background())
	for _, step := range []func(context.Context) error{
		n.hardenProcess, // first: before any secret is in memory
		n.loadTLS,
		n.connectHSM,
		n.openEntropy,
		n.openStorage,
		n.newServices,
		n.openAudit,
		n.newCore,
		n.newAPI,
	} {
		if err := step(ctx); err != nil {
			n.close()
			return nil, err
		}
	}
	n.watchRestores()
	return n, nil
}

// Run builds the node, listens, prepares dev mode when asked, and serves
// until SIGINT/SIGTERM; SIGHUP reloads the TLS certificate and the settings
// that can change safely (reload.go).
func Run(ctx context.Context, opts Options) error {
	n, err := Build(ctx, opts)
	if err != nil {
		return err
	}
	ln, err := listen(n.cfg.ListenAddress)
	if err != nil {
		n.close()
		return err
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
	n.log.Info("moonvault listening", "address", ln.Addr().String(), "tls_min_version", tlsVersionName(n.cfg.TLS.MinVersion),
		"storage", n.cfg.Storage.Kind, "seal", n.Core.SealType())
	return n.Serve(sigctx, ln)
}

// listen binds the address, naming the setting when it cannot.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, config.Wrong("listen_address", "%s is already in use by another process", addr)
	case errors.Is(err, syscall.EACCES):
		return nil, config.Wrong("listen_address", "%s: permission denied (ports below 1024 need privileges)", addr)
	case err != nil:
		return nil, config.Wrong("listen_address", "cannot listen on %s: %v", addr, err)
	}
	return ln, nil
}

func tlsVersionName(v uint16) string {
	if v == tls.VersionTLS12 {
		return "1.2"
	}
	return "1.3"
}

// Serve listens with TLS and serves until ctx ends, then shuts down
// gracefully, seals (zeroizing keys) and closes storage.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.currentCert(), nil }
	tc, err := tlsconfig.Server(tlsVersionName(n.cfg.TLS.MinVersion), getCert)
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
		ConnContext:       connpark.Context,
	}
	if n.hsm != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.Core.RunAutoUnseal(n.runCtx, time.Second, 30*time.Second)
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(connpark.Listener(ln), tc)) }()
	if n.opts.Ready != nil {
		n.opts.Ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		n.close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	n.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	n.close()
	return nil
}

// close releases what Build opened, in reverse order; it is safe on a
// partly built node.
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
