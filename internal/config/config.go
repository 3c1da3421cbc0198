// Package config loads the server configuration from a file (HCL, as Vault
// users know it, or YAML/JSON), then MOONVAULT_* environment variables, then
// command-line flags, each overriding the one before.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsimple"
	"sigs.k8s.io/yaml"

	"github.com/moonvault/moonvault/internal/secret"
)

// Server is the server configuration. Every field can be set in the file
// (the hcl/json name), through MOONVAULT_<NAME in upper case> and, for the
// common ones, with a flag of the same name using dashes.
type Server struct {
	ListenAddress string `hcl:"listen_address,optional" json:"listen_address,omitempty"`
	DataDir       string `hcl:"data_dir,optional" json:"data_dir,omitempty"`
	TLSCertFile   string `hcl:"tls_cert_file,optional" json:"tls_cert_file,omitempty"`
	TLSKeyFile    string `hcl:"tls_key_file,optional" json:"tls_key_file,omitempty"`
	// TLSMinVersion is "1.3" (default) or "1.2" (explicit opt-in).
	TLSMinVersion string `hcl:"tls_min_version,optional" json:"tls_min_version,omitempty"`
	LogLevel      string `hcl:"log_level,optional" json:"log_level,omitempty"`
	LogFormat     string `hcl:"log_format,optional" json:"log_format,omitempty"`

	// Storage is "bolt" (default) or "postgres".
	Storage     string `hcl:"storage,optional" json:"storage,omitempty"`
	PostgresURL string `hcl:"postgres_url,optional" json:"postgres_url,omitempty" secret:"true"`

	// Setting HSMLib selects the pkcs11 seal.
	HSMLib        string        `hcl:"hsm_lib,optional" json:"hsm_lib,omitempty"`
	HSMTokenLabel string        `hcl:"hsm_token_label,optional" json:"hsm_token_label,omitempty"`
	HSMSlot       string        `hcl:"hsm_slot,optional" json:"hsm_slot,omitempty"`
	HSMPIN        secret.String `hcl:"hsm_pin,optional" json:"hsm_pin,omitempty"`
	HSMKeyLabel   string        `hcl:"hsm_key_label,optional" json:"hsm_key_label,omitempty"`
	// EntropyMode is "augmentation" (default with the pkcs11 seal) or "off".
	EntropyMode string `hcl:"entropy_mode,optional" json:"entropy_mode,omitempty"`
	// SealWrap controls seal wrapping of CSPs; on by default.
	SealWrap *bool `hcl:"seal_wrap,optional" json:"seal_wrap,omitempty"`

	// Audit is on by default: to audit_file, or else to audit.log in
	// data_dir. Turning it off takes an explicit "off".
	Audit         string `hcl:"audit,optional" json:"audit,omitempty"`
	AuditFile     string `hcl:"audit_file,optional" json:"audit_file,omitempty"`
	AuditMaxBytes int64  `hcl:"audit_max_bytes,optional" json:"audit_max_bytes,omitempty"`
	AuditStdout   bool   `hcl:"audit_stdout,optional" json:"audit_stdout,omitempty"`

	RequireTEE       bool `hcl:"require_tee,optional" json:"require_tee,omitempty"`
	RequireHardening bool `hcl:"require_hardening,optional" json:"require_hardening,omitempty"`

	AccessTokenTTL  string `hcl:"access_token_ttl,optional" json:"access_token_ttl,omitempty"`
	SessionLifetime string `hcl:"session_lifetime,optional" json:"session_lifetime,omitempty"`
	IdleTimeout     string `hcl:"idle_timeout,optional" json:"idle_timeout,omitempty"`
	SignRequiresMFA bool   `hcl:"sign_requires_mfa,optional" json:"sign_requires_mfa,omitempty"`

	MaxRequestBytes int64 `hcl:"max_request_bytes,optional" json:"max_request_bytes,omitempty"`

	// MetricsUnauthenticated serves /v1/sys/metrics without a token (as
	// Vault's unauthenticated_metrics_access), also while sealed.
	MetricsUnauthenticated bool `hcl:"metrics_unauthenticated,optional" json:"metrics_unauthenticated,omitempty"`
}

// Defaults returns a configuration with every default filled in.
func Defaults() Server {
	return Server{
		ListenAddress:   "127.0.0.1:8200",
		TLSMinVersion:   "1.3",
		LogLevel:        "info",
		LogFormat:       "json",
		Storage:         "bolt",
		HSMKeyLabel:     "moonvault-root",
		AuditMaxBytes:   100 << 20,
		AccessTokenTTL:  "5m",
		SessionLifetime: "12h",
		IdleTimeout:     "1h",
		MaxRequestBytes: 1 << 20,
	}
}

// LoadFile merges the file at path into c. The format follows the
// extension: .hcl, or .yaml/.yml/.json.
func (c *Server) LoadFile(path string) error {
	src, err := os.ReadFile(path) // #nosec G304 -- the operator names the config file
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var f Server
	switch strings.ToLower(filepath.Ext(path)) {
	case ".hcl":
		if err := hclsimple.Decode(filepath.Base(path), src, nil, &f); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	case ".yaml", ".yml", ".json":
		if err := yaml.UnmarshalStrict(src, &f); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	default:
		return fmt.Errorf("config %s: unknown format (use .hcl, .yaml or .json)", path)
	}
	c.merge(&f)
	return nil
}

// LoadEnv merges MOONVAULT_<FIELD> variables into c.
func (c *Server) LoadEnv(getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := jsonName(t.Field(i))
		raw := getenv("MOONVAULT_" + strings.ToUpper(name))
		if raw == "" {
			continue
		}
		if err := setField(v.Field(i), raw); err != nil {
			return fmt.Errorf("environment MOONVAULT_%s: %w", strings.ToUpper(name), err)
		}
	}
	return nil
}

// Set assigns one field by its config name (used for flags).
func (c *Server) Set(name, raw string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if jsonName(t.Field(i)) == name {
			if err := setField(v.Field(i), raw); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("unknown setting %q", name)
}

func (c *Server) merge(f *Server) {
	dst := reflect.ValueOf(c).Elem()
	src := reflect.ValueOf(f).Elem()
	for i := 0; i < src.NumField(); i++ {
		if !src.Field(i).IsZero() {
			dst.Field(i).Set(src.Field(i))
		}
	}
}

func jsonName(f reflect.StructField) string {
	n, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return n
}

func setField(f reflect.Value, raw string) error {
	switch f.Kind() {
	case reflect.String:
		f.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("not a boolean")
		}
		f.SetBool(b)
	case reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return errors.New("not an integer")
		}
		f.SetInt(n)
	case reflect.Pointer:
		if f.Type().Elem().Kind() == reflect.Bool {
			b, err := strconv.ParseBool(raw)
			if err != nil {
				return errors.New("not a boolean")
			}
			f.Set(reflect.ValueOf(&b))
			return nil
		}
		return errors.New("unsupported type")
	default:
		return errors.New("unsupported type")
	}
	return nil
}

// Validate checks values that have a fixed set of choices.
func (c *Server) Validate() error {
	switch c.TLSMinVersion {
	case "1.3", "1.2":
	default:
		return fmt.Errorf("tls_min_version %q: use 1.3 (default) or 1.2", c.TLSMinVersion)
	}
	switch c.Storage {
	case "bolt", "postgres":
	default:
		return fmt.Errorf("storage %q: use bolt or postgres", c.Storage)
	}
	if c.Storage == "postgres" && c.PostgresURL == "" {
		return errors.New("storage postgres needs postgres_url (or MOONVAULT_POSTGRES_URL)")
	}
	switch c.EntropyMode {
	case "", "augmentation", "off":
	default:
		return fmt.Errorf("entropy_mode %q: use augmentation or off", c.EntropyMode)
	}
	if c.EntropyMode == "augmentation" && c.HSMLib == "" {
		return errors.New("entropy_mode augmentation needs an HSM (hsm_lib)")
	}
	switch c.Audit {
	case "", "on":
	case "off":
		if c.AuditFile != "" || c.AuditStdout {
			return errors.New(`audit = "off" conflicts with audit_file / audit_stdout: remove one`)
		}
	default:
		return fmt.Errorf("audit %q: use on (default) or off", c.Audit)
	}
	for name, d := range map[string]string{"access_token_ttl": c.AccessTokenTTL, "session_lifetime": c.SessionLifetime, "idle_timeout": c.IdleTimeout} {
		if _, err := time.ParseDuration(d); err != nil {
			return fmt.Errorf("%s %q: not a duration", name, d)
		}
	}
	if ttl, _ := time.ParseDuration(c.AccessTokenTTL); ttl <= 0 || ttl > 15*time.Minute {
		return fmt.Errorf("access_token_ttl %s: must be between 1s and 15m", c.AccessTokenTTL)
	}
	if c.MaxRequestBytes <= 0 {
		return errors.New("max_request_bytes must be positive")
	}
	return nil
}

// Duration parses a validated duration field.
func Duration(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

// SealWrapEnabled reports the effective seal wrap setting (default on).
func (c *Server) SealWrapEnabled() bool { return c.SealWrap == nil || *c.SealWrap }
