package config

import (
	"fmt"
	"strings"
)

// Markdown renders the settings reference (docs/configuration.md).
func Markdown() string {
	var b strings.Builder
	b.WriteString(`# Configuration reference

<!-- Generated from internal/config (Settings); TestConfigurationDoc keeps it
true. Edit the table in internal/config/config.go, then run
MOONVAULT_UPDATE_DOCS=1 go test ./internal/config -->

` + "`moonvault server`" + ` reads its settings from a file (` + "`-config FILE`" + `: HCL,
YAML or JSON, chosen by the extension), then from ` + "`MOONVAULT_*`" + ` environment
variables, then from flags; each overrides the one before (flags win).
Durations are Go durations (` + "`90s`, `5m`, `12h`" + `). An unknown setting, in any of
the three, is refused with the nearest known name; every invalid value stops
the server at start-up with one line naming the setting.

| setting | default | environment | flag | meaning |
|---|---|---|---|---|
`)
	for _, s := range settings {
		def := s.Default()
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		if s.Name == "seal_wrap" {
			def = "`true`"
		}
		flag := "—"
		if f := s.Flag(); f != "" {
			flag = "`-" + f + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s |\n", s.Name, def, s.Env(), flag, s.Doc)
	}
	b.WriteString(`
Go's runtime variables apply as usual (` + "`GOMAXPROCS`, `GOMEMLIMIT`" + `,
` + "`GODEBUG`" + `). One default differs: the server collects garbage at
` + "`GOGC=200`" + ` (when the live heap has tripled) unless ` + "`GOGC`" + ` is set; it keeps
little on the heap, and this costs a few MB of memory for ~8% less CPU
per signature (docs/scaling.md, Audit cost).

Example (` + "`server.hcl`" + `):

` + "```hcl" + `
listen_address  = "0.0.0.0:8200"
tls_cert_file   = "/etc/moonvault/tls.crt"
tls_key_file    = "/etc/moonvault/tls.key"
storage         = "postgres"
postgres_url    = "postgres://moonvault@db:5432/moonvault?sslmode=verify-full"
hsm_lib         = "/usr/lib/softhsm/libsofthsm2.so"
hsm_token_label = "moonvault"
audit_file      = "/var/log/moonvault/audit.log"
` + "```" + `

Keep secrets out of the file and the command line: ` + "`MOONVAULT_HSM_PIN`" + ` (there is
no flag for it) and ` + "`MOONVAULT_POSTGRES_URL`" + ` when it holds a password.

Only the server reads these. The command-line client reads
` + "`MOONVAULT_ADDR`" + ` (default ` + "`https://127.0.0.1:8200`" + `), ` + "`MOONVAULT_CACERT`" + `,
` + "`MOONVAULT_TOKEN`" + ` and ` + "`MOONVAULT_CONFIG_DIR`" + ` (where ` + "`moonvault login`" + ` keeps its
tokens; default: the user's configuration directory).
`)
	return b.String()
}
