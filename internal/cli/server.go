package cli

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"strings"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/server"
)

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
	cfg := config.Defaults()
	if *cfgFile != "" {
		if err := cfg.LoadFile(*cfgFile); err != nil {
			return err
		}
	}
	if err := cfg.LoadEnv(os.Environ()); err != nil {
		return err
	}
	var setErr error
	fs.Visit(func(f *flag.Flag) {
		name := strings.ReplaceAll(f.Name, "-", "_")
		if _, ok := vals[name]; ok && setErr == nil {
			setErr = cfg.Set(name, f.Value.String())
		}
	})
	if setErr != nil {
		return setErr
	}
	if *dev && *devListen != "" {
		cfg.ListenAddress = *devListen
	}
	if *dev && cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "moonvault-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	// The logger first: every later problem is one log line.
	node, err := cfg.Resolve(config.Mode{Dev: *dev})
	if err != nil {
		return err
	}
	log := newLogger(g, node.Log)
	slog.SetDefault(log)
	log.Info("moonvault starting", "version", versionString())
	err = server.Run(context.Background(), server.Options{Config: cfg, Dev: *dev, Out: g.stdout, Logger: log})
	if err != nil {
		log.Error("moonvault cannot start", "err", err.Error())
		return errLogged
	}
	return nil
}

// errLogged: the error is already in the log; exit 1 without repeating it.
var errLogged = errors.New("logged")

func newLogger(g *globals, l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(g.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(g.stderr, opts))
}

var serverHelp = help{
	usage:   "moonvault server [-config FILE] [-dev] [flags]",
	summary: "Run the Moon Vault server. Settings come from the file, then MOONVAULT_* variables, then flags (flags win); docs/configuration.md lists them all.",
	example: "moonvault server -config /etc/moonvault/server.hcl\n  moonvault server -dev -dev-listen-address 127.0.0.1:8300",
}
