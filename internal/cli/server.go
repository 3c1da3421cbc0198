package cli

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/server"
)

// serverGCPercent is the server's GOGC unless the environment sets one. The
// server keeps little on the heap (tens of MB) and allocates per request;
// collecting when the live heap has tripled rather than doubled costs a few
// MB and saved ~8% of CPU per audited signature at 64 connections (issue 14).
const serverGCPercent = 200

// tuneGC sets serverGCPercent, unless GOGC is set: then Go's runtime has
// already applied it.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
}

// runServer starts a node. Settings come from the file, then MOONVAULT_*
// variables, then flags: each overrides the one before.
func runServer(g *globals, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	cfgFile := fs.String("config", "", "configuration file (.hcl, .yaml or .json)")
	dev := fs.Bool("dev", false, "dev mode: temporary data dir, initialised and unsealed, self-signed TLS, admin user")
	devListen := fs.String("dev-listen-address", "", "dev mode listen address (default 127.0.0.1:8200)")
	vals := map[string]*string{}
	for _, s := range config.Settings() {
		if f := s.Flag(); f != "" {
			vals[s.Name] = fs.String(f, "", s.Doc+" ("+s.Env()+")")
		}
	}
	if err := parseFlags(g, fs, serverHelp, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"server takes no arguments: " + strings.Join(fs.Args(), " ")}
	}
	tuneGC(os.Getenv)
	var tempDir string
	// load reads file < env < flags; it runs again on SIGHUP.
	load := func() (config.Server, error) {
		cfg := config.Defaults()
		if *cfgFile != "" {
			if err := cfg.LoadFile(*cfgFile); err != nil {
				return cfg, err
			}
		}
		if err := cfg.LoadEnv(os.Environ()); err != nil {
			return cfg, err
		}
		var setErr error
		fs.Visit(func(f *flag.Flag) {
			name := strings.ReplaceAll(f.Name, "-", "_")
			if _, ok := vals[name]; ok && setErr == nil {
				setErr = cfg.Set(name, f.Value.String())
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
	// The logger first: every later problem is one log line.
	node, err := cfg.Resolve(config.Mode{Dev: *dev})
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(node.Log.Level)
	log := newLogger(g, node.Log.Format, level)
	slog.SetDefault(log)
	log.Info("moonvault starting", "version", versionString())
	err = server.Run(context.Background(), server.Options{Config: cfg, Dev: *dev, Out: g.stdout, Logger: log, Reload: load, LogLevel: level})
	if err != nil {
		log.Error("moonvault cannot start", "err", err.Error())
		return errLogged
	}
	return nil
}

// errLogged: the error is already in the log; exit 1 without repeating it.
var errLogged = errors.New("logged")

// newLogger logs at the level held by lv, which a reload may change.
func newLogger(g *globals, format string, lv *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(g.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(g.stderr, opts))
}

var serverHelp = help{
	usage:   "moonvault server [-config FILE] [-dev] [flags]",
	summary: "Run the Moon Vault server. Settings come from the file, then MOONVAULT_* variables, then flags (flags win); docs/configuration.md lists them all. SIGHUP reloads the TLS certificate and the settings that can change while serving.",
	example: "moonvault server -config /etc/moonvault/server.hcl\n  moonvault server -dev -dev-listen-address 127.0.0.1:8300",
}
