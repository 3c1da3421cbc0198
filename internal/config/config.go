// Package config holds the server's settings: their names, defaults and
// documentation (one table, Settings), loading them from a file (HCL, as
// Vault users know it, or YAML/JSON), then MOONVAULT_* environment
// variables, then command-line flags, each overriding the one before, and
// validating them into typed values (Resolve) once, at start-up.
//
// Every mistake an operator can make is an error naming the setting and how
// to set it; an unknown setting is refused with the nearest known name.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2/hclsimple"
	"sigs.k8s.io/yaml"

	"github.com/moonvault/moonvault/internal/secret"
)

// Server is the server configuration as written: every field can be set in
// the file (the hcl/json name), through MOONVAULT_<NAME in upper case> and,
// except secrets, with a flag of the same name using dashes. Resolve
// validates it into a Node.
type Server struct {
	ListenAddress string `hcl:"listen_address,optional" json:"listen_address,omitempty"`
	DataDir       string `hcl:"data_dir,optional" json:"data_dir,omitempty"`
	TLSCertFile   string `hcl:"tls_cert_file,optional" json:"tls_cert_file,omitempty"`
	TLSKeyFile    string `hcl:"tls_key_file,optional" json:"tls_key_file,omitempty"`
	TLSMinVersion string `hcl:"tls_min_version,optional" json:"tls_min_version,omitempty"`
	LogLevel      string `hcl:"log_level,optional" json:"log_level,omitempty"`
	LogFormat     string `hcl:"log_format,optional" json:"log_format,omitempty"`

	Storage     string        `hcl:"storage,optional" json:"storage,omitempty"`
	PostgresURL secret.String `hcl:"postgres_url,optional" json:"postgres_url,omitempty"`

	HSMLib        string        `hcl:"hsm_lib,optional" json:"hsm_lib,omitempty"`
	HSMTokenLabel string        `hcl:"hsm_token_label,optional" json:"hsm_token_label,omitempty"`
	HSMSlot       string        `hcl:"hsm_slot,optional" json:"hsm_slot,omitempty"`
	HSMPIN        secret.String `hcl:"hsm_pin,optional" json:"hsm_pin,omitempty"`
	HSMKeyLabel   string        `hcl:"hsm_key_label,optional" json:"hsm_key_label,omitempty"`
	// HSMMechanism is aes_gcm (default), aes_cbc_pad_hmac or rsa_oaep.
	HSMMechanism       string `hcl:"hsm_mechanism,optional" json:"hsm_mechanism,omitempty"`
	HSMHMACKeyLabel    string `hcl:"hsm_hmac_key_label,optional" json:"hsm_hmac_key_label,omitempty"`
	HSMRSAOAEPHash     string `hcl:"hsm_rsa_oaep_hash,optional" json:"hsm_rsa_oaep_hash,omitempty"`
	HSMSigningKeyLabel string `hcl:"hsm_signing_key_label,optional" json:"hsm_signing_key_label,omitempty"`
	FIPSMode           bool   `hcl:"fips_mode,optional" json:"fips_mode,omitempty"`
	EntropyMode        string `hcl:"entropy_mode,optional" json:"entropy_mode,omitempty"`
	SealWrap           *bool  `hcl:"seal_wrap,optional" json:"seal_wrap,omitempty"`

	// Audit is on by default (to audit_file, or else audit.log in data_dir);
	// turning it off takes an explicit "off".
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

	RestoreMaxBytes  int64  `hcl:"restore_max_bytes,optional" json:"restore_max_bytes,omitempty"`
	RestoreTimeout   string `hcl:"restore_timeout,optional" json:"restore_timeout,omitempty"`
	RestoreRetention string `hcl:"restore_retention,optional" json:"restore_retention,omitempty"`

	TrustedProxies []string `hcl:"trusted_proxies,optional" json:"trusted_proxies,omitempty"`

	// PolicyChangeApprovals makes every policy change an approval that
	// this many admins other than the one asking must approve.
	PolicyChangeApprovals int64  `hcl:"policy_change_approvals,optional" json:"policy_change_approvals,omitempty"`
	ApprovalTTL           string `hcl:"approval_ttl,optional" json:"approval_ttl,omitempty"`
	ApprovalMaxPending    int64  `hcl:"approval_max_pending,optional" json:"approval_max_pending,omitempty"`
	ApprovalRetention     string `hcl:"approval_retention,optional" json:"approval_retention,omitempty"`
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
		// 100,000 accounts are about 60 MiB of snapshot.
		RestoreMaxBytes:  16 << 30,
		RestoreTimeout:   "1h",
		RestoreRetention: "168h",
		ApprovalTTL:      "24h",
		// Bounds of the approval store (review L1).
		ApprovalMaxPending: 100,
		ApprovalRetention:  "720h",
	}
}

// Setting describes one setting: its name in the file, its documentation,
// and whether it is also a flag.
type Setting struct {
	Name string
	Doc  string
	// NoFlag: a secret, kept off the command line (ps shows argv).
	NoFlag bool
}

// Env is the setting's environment variable.
func (s Setting) Env() string { return "MOONVAULT_" + strings.ToUpper(s.Name) }

// Flag is the setting's flag name ("" when it has none).
func (s Setting) Flag() string {
	if s.NoFlag {
		return ""
	}
	return strings.ReplaceAll(s.Name, "_", "-")
}

// Default is the default value as text ("" when none).
func (s Setting) Default() string {
	d := Defaults()
	f, ok := fieldByName(reflect.ValueOf(&d).Elem(), s.Name)
	if !ok || f.IsZero() {
		return ""
	}
	return fmt.Sprint(f.Interface())
}

// settings lists every field of Server, in order (TestSettingsCoverServer
// keeps the two in step; docs/configuration.md is generated from it).
var settings = []Setting{
	{Name: "listen_address", Doc: "TCP address to serve HTTPS on, host:port."},
	{Name: "data_dir", Doc: "Directory of the bbolt database (storage bolt). A node over PostgreSQL is stateless and needs none (then set audit_file: the audit log is on by default)."},
	{Name: "tls_cert_file", Doc: "PEM certificate (chain) served over TLS; reloaded on SIGHUP. Required, except in dev mode."},
	{Name: "tls_key_file", Doc: "PEM private key of tls_cert_file."},
	{Name: "tls_min_version", Doc: "Lowest TLS version accepted: 1.3, or 1.2 (ECDHE with AEAD suites only). TLS 1.0 and 1.1 are refused (RFC 8996)."},
	{Name: "log_level", Doc: "debug, info, warn or error."},
	{Name: "log_format", Doc: "json or text."},
	{Name: "storage", Doc: "bolt (an embedded file in data_dir) or postgres (shared by every node of a cluster)."},
	{Name: "postgres_url", Doc: "PostgreSQL URL or key=value DSN for storage postgres; connect_timeout (default 5s) bounds the start-up wait."},
	{Name: "hsm_lib", Doc: "Path of the PKCS#11 library. Setting it selects the pkcs11 seal (auto-unseal) and HSM entropy."},
	{Name: "hsm_token_label", Doc: "Label of the HSM token (or use hsm_slot)."},
	{Name: "hsm_slot", Doc: "Slot number of the HSM token (instead of hsm_token_label)."},
	{Name: "hsm_pin", Doc: "User PIN of the HSM token. Environment or file only.", NoFlag: true},
	{Name: "hsm_key_label", Doc: "Label of the HSM key that wraps the root key and seal-wraps CSPs (the RSA key pair with rsa_oaep). Created, non-extractable and sensitive, if missing. A new label plus operator rewrap rotates it."},
	{Name: "hsm_mechanism", Doc: "How the HSM wraps: aes_gcm (CKM_AES_GCM), aes_cbc_pad_hmac (CKM_AES_CBC_PAD then CKM_SHA256_HMAC, for tokens without GCM) or rsa_oaep (CKM_RSA_PKCS_OAEP, RSA-3072, each ciphertext signed with CKM_SHA256_RSA_PKCS_PSS by a second key pair). Default aes_gcm; operator rewrap moves a vault to another one."},
	{Name: "hsm_hmac_key_label", Doc: "Label of the HMAC key of aes_cbc_pad_hmac (default: hsm_key_label + \"-hmac\")."},
	{Name: "hsm_rsa_oaep_hash", Doc: "Hash of rsa_oaep: sha256 (default) or sha1 (for tokens with nothing else, such as SoftHSM2 2.6)."},
	{Name: "hsm_signing_key_label", Doc: "Label of the RSA-3072 key pair that signs every rsa_oaep ciphertext (default: hsm_key_label + \"-sign\"); created sign-only, non-extractable and sensitive, if missing."},
	{Name: "fips_mode", Doc: "Refuse to start unless Go runs in FIPS 140-3 mode (GODEBUG=fips140=on or only, or a GOFIPS140=v1.0.0 build); see docs/fips.md."},
	{Name: "entropy_mode", Doc: "augmentation (OS randomness mixed with the HSM's; the default with hsm_lib) or off."},
	{Name: "seal_wrap", Doc: "Seal-wrap critical security parameters with the HSM key (pkcs11 seal). Default true; fixed at init."},
	{Name: "audit", Doc: `on (the default: audit_file, or else audit.log in data_dir) or off. The audit log is on unless this says "off".`},
	{Name: "audit_file", Doc: "Append the hash-chained audit log to this file (locked: one writer per file)."},
	{Name: "audit_max_bytes", Doc: "Rotate audit_file past this many bytes (0: never)."},
	{Name: "audit_stdout", Doc: "Also write the audit log to standard output."},
	{Name: "require_tee", Doc: "Refuse to unseal outside a TEE (AMD SEV-SNP, Intel TDX)."},
	{Name: "require_hardening", Doc: "Refuse to start unless every process hardening measure applies."},
	{Name: "access_token_ttl", Doc: "Lifetime of access tokens (Go duration, 1s to 15m)."},
	{Name: "session_lifetime", Doc: "Absolute lifetime of a session and its refresh tokens (Go duration)."},
	{Name: "idle_timeout", Doc: "A session unused this long ends (Go duration)."},
	{Name: "sign_requires_mfa", Doc: "Every signature needs a recent TOTP login (step-up)."},
	{Name: "max_request_bytes", Doc: "Largest request body accepted (bytes)."},
	{Name: "metrics_unauthenticated", Doc: "Serve GET /v1/sys/metrics without a token, also while sealed (as Vault's unauthenticated_metrics_access)."},
	{Name: "restore_max_bytes", Doc: "Largest snapshot a restore accepts (bytes); 100,000 accounts are about 60 MiB."},
	{Name: "restore_timeout", Doc: "Longest a restore's upload may take (Go duration)."},
	{Name: "restore_retention", Doc: "How long the data a restore replaced is kept (a table, or a file beside the bolt database) before a later restore removes it (Go duration). See docs/operations.md, Undo a restore."},
	{Name: "trusted_proxies", Doc: "Reverse proxies and load balancers (CIDRs or addresses; comma-separated in the environment and on the command line) whose X-Forwarded-For names the client, for the per-address limits and the audit log; from any other peer the header is ignored (as Vault's x_forwarded_for_authorized_addrs)."},
	{Name: "policy_change_approvals", Doc: "When above 0, creating, changing or deleting a transaction policy becomes an approval that this many admins other than the requester must approve (fresh MFA each), so one stolen admin session cannot lift a limit; so do creating, disabling, enabling or deleting an admin, and resetting the password of an admin or of a user a policy names as an approver. User writes then need step-up, and a restore needs a root token from generate-root. See docs/policies.md. 0 to 10."},
	{Name: "approval_ttl", Doc: "How long a request held for approval (require_approval, or a policy or user change) waits for its approvers before it expires (Go duration, 1m to 720h)."},
	{Name: "approval_max_pending", Doc: "Most approvals one requester (a user with their API keys) may have waiting at once; past it a request that needs approval is refused with 429 too_many_pending_approvals. 1 to 100000."},
	{Name: "approval_retention", Doc: "How long a decided approval (signed, applied, denied, rejected, expired) is kept before a sweep removes it; the audit log keeps its history (Go duration, 1h to 87600h)."},
}

// Settings lists every setting.
func Settings() []Setting { return settings }

// Lookup finds a setting by its file name.
func Lookup(name string) (Setting, bool) {
	for _, s := range settings {
		if s.Name == name {
			return s, true
		}
	}
	return Setting{}, false
}

// Wrong is a problem with one setting: the message names the setting and
// how to set it, on one line.
func Wrong(name, format string, args ...any) error {
	return &problem{name: name, msg: fmt.Sprintf(format, args...)}
}

type problem struct{ name, msg string }

func (p *problem) Error() string {
	s, ok := Lookup(p.name)
	if !ok {
		return p.name + ": " + oneLine(p.msg)
	}
	how := "set " + s.Name + " in the config file or " + s.Env()
	if f := s.Flag(); f != "" {
		how += " or -" + f
	}
	return fmt.Sprintf("%s: %s (%s)", s.Name, oneLine(p.msg), how)
}

// LoadFile merges the file at path into c. The format follows the
// extension: .hcl, or .yaml/.yml/.json. An unknown setting is refused.
func (c *Server) LoadFile(path string) error {
	src, err := os.ReadFile(path) // #nosec G304 -- the operator names the config file
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var f Server
	switch strings.ToLower(filepath.Ext(path)) {
	case ".hcl":
		// HCL's own diagnostics name the line and suggest the nearest name.
		if err := hclsimple.Decode(filepath.Base(path), src, nil, &f); err != nil {
			return fmt.Errorf("config file %s: %s", path, oneLine(err.Error()))
		}
	case ".yaml", ".yml", ".json":
		if err := yaml.UnmarshalStrict(src, &f); err != nil {
			return fmt.Errorf("config file %s: %s", path, oneLine(explainYAML(err)))
		}
	default:
		return fmt.Errorf("config file %s: unknown format (use .hcl, .yaml or .json)", path)
	}
	c.merge(&f)
	return nil
}

// explainYAML adds the nearest setting to sigs.k8s.io/yaml's
// `unknown field "x"` errors.
func explainYAML(err error) string {
	msg := err.Error()
	_, rest, ok := strings.Cut(msg, `unknown field "`)
	if !ok {
		return msg
	}
	name, _, _ := strings.Cut(rest, `"`)
	return "unknown setting " + strconv.Quote(name) + suggest(name)
}

// knownEnv are MOONVAULT_* variables that are not server settings (the
// CLI's, and the test suite's).
var knownEnv = map[string]bool{
	"MOONVAULT_ADDR": true, "MOONVAULT_CACERT": true, "MOONVAULT_TOKEN": true, "MOONVAULT_API_KEY": true,
	"MOONVAULT_USERNAME": true, "MOONVAULT_PASSWORD": true, "MOONVAULT_NEW_PASSWORD": true,
	"MOONVAULT_UNSEAL_KEY": true, "MOONVAULT_PRIVATE_KEY": true, "MOONVAULT_DEV_ADMIN_PASSWORD": true,
	"MOONVAULT_CONFIG_DIR": true, "MOONVAULT_MNEMONIC": true, "MOONVAULT_BIP39_PASSPHRASE": true,
}

// LoadEnv merges MOONVAULT_<SETTING> variables into c. environ lists the
// environment as "KEY=value" (os.Environ). A MOONVAULT_ variable that is no
// setting but close to one is refused as a likely typo.
func (c *Server) LoadEnv(environ []string) error {
	v := reflect.ValueOf(c).Elem()
	for _, kv := range environ {
		k, raw, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(k, "MOONVAULT_")
		if !ok || raw == "" || knownEnv[k] || strings.HasPrefix(name, "TEST_") {
			continue
		}
		s, ok := Lookup(strings.ToLower(name))
		if !ok {
			if sug := suggest(strings.ToLower(name)); sug != "" {
				return fmt.Errorf("environment %s: unknown setting%s", k, sug)
			}
			continue
		}
		f, _ := fieldByName(v, s.Name)
		if err := setField(f, raw); err != nil {
			return Wrong(s.Name, "environment %s: %v", k, err)
		}
	}
	return nil
}

// Set assigns one setting by its name (flags).
func (c *Server) Set(name, raw string) error {
	f, ok := fieldByName(reflect.ValueOf(c).Elem(), name)
	if !ok {
		return fmt.Errorf("unknown setting %q%s", name, suggest(name))
	}
	if err := setField(f, raw); err != nil {
		return Wrong(name, "%q: %v", raw, err)
	}
	return nil
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

func fieldByName(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); n == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func setField(f reflect.Value, raw string) error {
	switch f.Kind() {
	case reflect.String:
		f.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		f.SetBool(b)
	case reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return errors.New("not an integer")
		}
		f.SetInt(n)
	case reflect.Slice:
		var list []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		f.Set(reflect.ValueOf(list))
	case reflect.Pointer:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		f.Set(reflect.ValueOf(&b))
	default:
		return errors.New("unsupported type")
	}
	return nil
}

// suggest returns `; did you mean "x"?` for the setting nearest to name,
// or "" when none is close.
func suggest(name string) string {
	best, bestD := "", 3 // at most two edits away
	for _, s := range settings {
		if d := levenshtein.Distance(name, s.Name, nil); d < bestD {
			best, bestD = s.Name, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + strconv.Quote(best) + "?"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
