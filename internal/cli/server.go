package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/server"
)

// serverFlags maps flag names to config names; each can also be set in the
// config file and as MOONVAULT_<NAME>.
var serverFlags = []struct{ flag, setting, help string }{
	{"listen-address", "listen_address", "address to listen on (default 127.0.0.1:8200)"},
	{"data-dir", "data_dir", "directory for the bbolt file, dev state and SoftHSM2 dev token"},
	{"tls-cert-file", "tls_cert_file", "PEM certificate (chain) file"},
	{"tls-key-file", "tls_key_file", "PEM private key file"},
	{"tls-min-version", "tls_min_version", "1.3 (default) or 1.2"},
	{"log-level", "log_level", "debug, info, warn or error"},
	{"storage", "storage", "bolt (default) or postgres"},
	{"postgres-url", "postgres_url", "PostgreSQL URL for -storage postgres"},
	{"audit", "audit", `on (default: audit_file, or audit.log in data_dir) or off`},
	{"audit-file", "audit_file", "append the audit log to this file"},
}

func runServer(g *globals, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(g.stderr)
	cfgFile := fs.String("config", "", "configuration file (.hcl, .yaml or .json)")
	dev := fs.Bool("dev", false, "dev mode: initialise, unseal, self-signed TLS, admin user")
	devListen := fs.String("dev-listen-address", "", "dev mode listen address (default 127.0.0.1:8200)")
	vals := map[string]*string{}
	for _, f := range serverFlags {
		vals[f.setting] = fs.String(f.flag, "", f.help)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"server takes no arguments: " + strings.Join(fs.Args(), " ")}
	}
	var tempDir string
	// load reads file < env < flags; it runs again on SIGHUP.
	load := func() (config.Server, error) {
		cfg := config.Defaults()
		if *cfgFile != "" {
			if err := cfg.LoadFile(*cfgFile); err != nil {
				return cfg, err
			}
		}
		if err := cfg.LoadEnv(os.Getenv); err != nil {
			return cfg, err
		}
		var setErr error
		fs.Visit(func(f *flag.Flag) {
			for _, sf := range serverFlags {
				if sf.flag == f.Name && setErr == nil {
					setErr = cfg.Set(sf.setting, f.Value.String())
				}
			}
		})
		if setErr != nil {
			return cfg, setErr
		}
		if *dev && *devListen != "" {
			cfg.ListenAddress = *devListen
		}
		if *dev && cfg.DataDir == "" {
			cfg.DataDir = tempDir
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if *dev && cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "moonvault-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		tempDir, cfg.DataDir = dir, dir
	}
	level := new(slog.LevelVar)
	log, err := newLogger(g, cfg.LogLevel, cfg.LogFormat, level)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	return server.Run(context.Background(), server.Options{Config: cfg, Dev: *dev, Out: g.stdout, Logger: log, Reload: load, LogLevel: level})
}

// newLogger logs at the level held by lv, which a reload may change.
func newLogger(g *globals, level, format string, lv *slog.LevelVar) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log_level %q: use debug, info, warn or error", level)
	}
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
}
