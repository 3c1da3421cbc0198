package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/moonvault/moonvault/internal/loadtest"
	"github.com/moonvault/moonvault/internal/tlsconfig"
)

// runBench drives a running vault: moonvault bench -c 64 -d 30s -mode sign.
func runBench(g *globals, args []string) error {
	var conns int
	var dur time.Duration
	var mode, username string
	if _, err := g.flags("bench", args, func(fs *flag.FlagSet) {
		fs.IntVar(&conns, "c", 64, "concurrent HTTPS connections")
		fs.DurationVar(&dur, "d", 10*time.Second, "duration")
		fs.StringVar(&mode, "mode", "sign", "sign (sign-message) or create (account creation)")
		fs.StringVar(&username, "username", envOr("MOONVAULT_USERNAME", "admin"), "user to log in as (password from MOONVAULT_BENCH_PASSWORD or MOONVAULT_DEV_ADMIN_PASSWORD)")
	}); err != nil {
		return err
	}
	tc, err := tlsconfig.ClientConfig(g.caCert)
	if err != nil {
		return err
	}
	pw := envOr("MOONVAULT_BENCH_PASSWORD", os.Getenv("MOONVAULT_DEV_ADMIN_PASSWORD"))
	cfg := loadtest.Config{Addr: g.addr, TLS: tc, Username: username, Password: pw, Conns: conns, Duration: dur, Mode: mode, Progress: g.stderr}
	if pw == "" {
		cfg.Token = g.token
		if cfg.Token == "" {
			return usageError{"set MOONVAULT_BENCH_PASSWORD (or MOONVAULT_DEV_ADMIN_PASSWORD), or MOONVAULT_TOKEN"}
		}
	}
	res, err := loadtest.Run(context.Background(), cfg)
	if err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(res)
	}
	_, err = fmt.Fprint(g.stdout, res.String())
	return err
}
