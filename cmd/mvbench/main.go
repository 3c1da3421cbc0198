// Command mvbench is Moon Vault's load tool: it drives sign-message (or
// account creation) requests on N keep-alive HTTPS connections for a fixed
// time and prints throughput and latency percentiles.
//
// The password comes from MOONVAULT_BENCH_PASSWORD or
// MOONVAULT_DEV_ADMIN_PASSWORD and a token from MOONVAULT_TOKEN, never
// from a flag: arguments are visible to every user of the machine (ps).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/moonvault/moonvault/internal/loadgen"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/tlsconfig"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "mvbench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mvbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("MOONVAULT_ADDR", "https://127.0.0.1:8200"), "vault address")
	cacert := fs.String("cacert", os.Getenv("MOONVAULT_CACERT"), "PEM file of the CA (or self-signed certificate) to trust")
	username := fs.String("username", "admin", "user to log in as")
	conns := fs.Int("c", 64, "connections")
	duration := fs.Duration("d", 10*time.Second, "duration")
	mode := fs.String("mode", loadgen.ModeSign, "sign | create")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tlsConf, err := tlsconfig.ClientConfig(*cacert)
	if err != nil {
		return err
	}
	cfg := loadgen.Config{
		Addr: *addr, TLS: tlsConf, Username: *username,
		Token:    secret.String(os.Getenv("MOONVAULT_TOKEN")),
		Password: secret.String(envOr("", os.Getenv("MOONVAULT_BENCH_PASSWORD"), os.Getenv("MOONVAULT_DEV_ADMIN_PASSWORD"))),
		Conns:    *conns, Duration: *duration, Mode: *mode, Progress: stderr,
	}
	if cfg.Token == "" && cfg.Password == "" {
		return errors.New("set MOONVAULT_BENCH_PASSWORD (or MOONVAULT_DEV_ADMIN_PASSWORD), or MOONVAULT_TOKEN")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintf(stderr, "mvbench: %s mode, %d connections, %s against %s\n", cfg.Mode, cfg.Conns, cfg.Duration, cfg.Addr)
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.Print(stdout)
	return nil
}

// envOr returns the first non-empty of: $name (when name is set), then vals.
func envOr(name string, vals ...string) string {
	if name != "" {
		if v := os.Getenv(name); v != "" {
			return v
		}
	}
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
