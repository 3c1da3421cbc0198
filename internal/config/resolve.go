package config

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/secret"
)

// Node is a validated configuration in typed values: what the server wires.
type Node struct {
	ListenAddress string
	// DataDir is "" for a node over PostgreSQL outside dev mode.
	DataDir string
	TLS     TLS
	Log     Log
	Storage Storage
	// HSM is nil without hsm_lib (the Shamir seal, OS entropy).
	HSM *HSM
	// FIPSMode: the process runs in Go's FIPS 140-3 mode (checked).
	FIPSMode bool
	// EntropyAugmented mixes HSM randomness into every CSP. In dev mode with
	// no hsm_lib and no entropy_mode it is decided by whether dev mode finds
	// SoftHSM2 (EntropyAuto).
	EntropyAugmented bool
	EntropyAuto      bool
	SealWrap         bool
	Audit            Audit

	RequireTEE       bool
	RequireHardening bool

	AccessTokenTTL  time.Duration
	SessionLifetime time.Duration
	IdleTimeout     time.Duration
	SignRequiresMFA bool

	MaxRequestBytes int64

	MetricsUnauthenticated bool

	Restore Restore
	// TrustedProxies may name the client in X-Forwarded-For.
	TrustedProxies []netip.Prefix

	PolicyChangeApprovals int
	ApprovalTTL           time.Duration
	ApprovalMaxPending    int
	ApprovalRetention     time.Duration
}

// Restore bounds snapshot restores.
type Restore struct {
	MaxBytes  int64
	Timeout   time.Duration
	Retention time.Duration
}

// TLS is the serving certificate. CertFile is "" only in dev mode (a
// self-signed certificate is generated).
type TLS struct {
	CertFile, KeyFile string
	MinVersion        uint16 // tls.VersionTLS13 or tls.VersionTLS12
}

// Log is the logger's configuration.
type Log struct {
	Level  slog.Level
	Format string // "json" or "text"
}

// Storage kinds.
const (
	StorageBolt     = "bolt"
	StoragePostgres = "postgres"
)

// Storage selects the physical backend.
type Storage struct {
	Kind        string // StorageBolt or StoragePostgres
	PostgresURL secret.String
}

// HSM is the PKCS#11 token and how the seal uses it.
type HSM struct {
	Lib        string
	TokenLabel string
	Slot       *uint
	PIN        secret.String
	KeyLabel   string
	// Mechanism is aes_gcm, aes_cbc_pad_hmac or rsa_oaep.
	Mechanism       string
	HMACKeyLabel    string // aes_cbc_pad_hmac; "" means KeyLabel + "-hmac"
	OAEPHash        string // rsa_oaep: sha256 or sha1
	SigningKeyLabel string // rsa_oaep; "" means KeyLabel + "-sign"
}

// Mode says how the node runs.
type Mode struct {
	// Dev: a temporary data dir and a self-signed certificate are allowed;
	// dev mode brings its own SoftHSM2 token when hsm_lib is unset.
	Dev bool
}

// Resolve validates c and returns its typed form. Every error names the
// setting to fix. It reads the TLS files (so that a missing, unreadable or
// mismatched pair is reported before anything starts) but opens nothing.
func (c Server) Resolve(m Mode) (*Node, error) {
	n := &Node{
		ListenAddress:    c.ListenAddress,
		DataDir:          c.DataDir,
		SealWrap:         c.SealWrap == nil || *c.SealWrap,
		RequireTEE:       c.RequireTEE,
		RequireHardening: c.RequireHardening,
		SignRequiresMFA:  c.SignRequiresMFA,
		MaxRequestBytes:  c.MaxRequestBytes,

		MetricsUnauthenticated: c.MetricsUnauthenticated,
	}
	for _, check := range []func() error{
		func() error { return checkListen(c.ListenAddress) },
		func() (err error) { n.Log, err = c.log(); return err },
		func() (err error) { n.TLS, err = c.tls(m); return err },
		func() (err error) { n.Storage, err = c.storage(m); return err },
		func() (err error) { n.Audit, err = c.audit(m); return err },
		func() (err error) { n.HSM, err = c.hsm(); return err },
		func() (err error) { n.FIPSMode, err = c.fips(); return err },
		func() (err error) { n.EntropyAugmented, err = c.entropy(m); return err },
		func() error { n.EntropyAuto = c.EntropyMode == "" && c.HSMLib == "" && m.Dev; return nil },
		func() (err error) { n.AccessTokenTTL, n.SessionLifetime, n.IdleTimeout, err = c.sessions(); return err },
		c.limits,
		func() (err error) { n.Restore, err = c.restore(); return err },
		func() (err error) { n.TrustedProxies, err = c.trustedProxies(); return err },
		func() (err error) { n.PolicyChangeApprovals, n.ApprovalTTL, err = c.approvals(); return err },
		func() (err error) { n.ApprovalMaxPending, n.ApprovalRetention, err = c.approvalStore(); return err },
	} {
		if err := check(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Validate reports the first problem Resolve would find.
func (c Server) Validate(m Mode) error {
	_, err := c.Resolve(m)
	return err
}

// Audit is where the audit log goes. It is on unless Off: File is
// audit_file, or else audit.log in data_dir (Defaulted).
type Audit struct {
	Off       bool
	File      string
	Defaulted bool // File was not set: the data-dir default
	MaxBytes  int64
	Stdout    bool
}

// audit resolves the audit settings: on by default (issue 13), so a node
// with no audit setting logs to audit.log in its data directory, and only
// audit = "off" turns it off.
func (c Server) audit(m Mode) (Audit, error) {
	a := Audit{File: c.AuditFile, MaxBytes: c.AuditMaxBytes, Stdout: c.AuditStdout}
	switch c.Audit {
	case "", "on":
	case "off":
		if c.AuditFile != "" || c.AuditStdout {
			return a, Wrong("audit", `is "off" but audit_file or audit_stdout is set: remove one or the other`)
		}
		return Audit{Off: true}, nil
	default:
		return a, Wrong("audit", "%q: use on (the default) or off", c.Audit)
	}
	if a.File == "" && !a.Stdout {
		switch {
		case c.DataDir != "":
			a.File, a.Defaulted = filepath.Join(c.DataDir, "audit.log"), true
		case !m.Dev: // dev mode always gets a data dir before it wires
			return a, Wrong("audit_file", `is required on a node without data_dir: the audit log is on by default (or set audit_stdout, or audit = "off")`)
		}
	}
	return a, nil
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Wrong("listen_address", "%q is not host:port", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || (p == 0 && port != "0") {
		return Wrong("listen_address", "%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /\\") {
		return Wrong("listen_address", "%q: %q is not a host name or IP address", addr, host)
	}
	return nil
}

func (c Server) log() (Log, error) {
	var l Log
	if err := l.Level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return l, Wrong("log_level", "%q: use debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text":
		l.Format = c.LogFormat
	case "":
		l.Format = "json"
	default:
		return l, Wrong("log_format", "%q: use json or text", c.LogFormat)
	}
	return l, nil
}

func (c Server) tls(m Mode) (TLS, error) {
	t := TLS{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile}
	switch c.TLSMinVersion {
	case "1.3", "":
		t.MinVersion = tls.VersionTLS13
	case "1.2":
		t.MinVersion = tls.VersionTLS12
	case "1.0", "1.1", "1":
		return t, Wrong("tls_min_version", "%q: TLS 1.0 and 1.1 are refused (RFC 8996); use 1.3 (default) or 1.2", c.TLSMinVersion)
	default:
		return t, Wrong("tls_min_version", "%q: use 1.3 (default) or 1.2", c.TLSMinVersion)
	}
	switch {
	case t.CertFile == "" && t.KeyFile == "" && m.Dev:
		return t, nil // dev mode generates a self-signed certificate
	case t.CertFile == "":
		return t, Wrong("tls_cert_file", "is required: Moon Vault serves HTTPS only (or run moonvault server -dev)")
	case t.KeyFile == "":
		return t, Wrong("tls_key_file", "is required with tls_cert_file")
	}
	return t, CheckKeyPair(t.CertFile, t.KeyFile)
}

// CheckKeyPair loads a certificate and key and names the file at fault:
// missing, unreadable, not PEM, or a key that does not match.
func CheckKeyPair(certFile, keyFile string) error {
	certPEM, err := os.ReadFile(certFile) // #nosec G304 -- the operator names the file
	if err != nil {
		return Wrong("tls_cert_file", "%s", fileProblem(err))
	}
	keyPEM, err := os.ReadFile(keyFile) // #nosec G304 -- the operator names the file
	if err != nil {
		return Wrong("tls_key_file", "%s", fileProblem(err))
	}
	_, err = tls.X509KeyPair(certPEM, keyPEM)
	secret.Wipe(keyPEM)
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "private key does not match public key"):
		return Wrong("tls_key_file", "%s does not belong to the certificate in %s", keyFile, certFile)
	case strings.Contains(msg, "in key input"), strings.Contains(msg, "private key"):
		// tls's key errors name no key bytes.
		return Wrong("tls_key_file", "%s: not a PEM private key (%s)", keyFile, strings.TrimPrefix(msg, "tls: "))
	}
	return Wrong("tls_cert_file", "%s: not a PEM certificate (%s)", certFile, strings.TrimPrefix(msg, "tls: "))
}

func fileProblem(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return pe.Path + ": no such file"
		case errors.Is(err, os.ErrPermission):
			return pe.Path + ": permission denied"
		}
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

func (c Server) storage(m Mode) (Storage, error) {
	s := Storage{Kind: c.Storage, PostgresURL: c.PostgresURL}
	switch c.Storage {
	case StorageBolt:
		if c.DataDir == "" && !m.Dev {
			return s, Wrong("data_dir", "is required with storage bolt (the database file lives there); a node over PostgreSQL (storage postgres) needs none")
		}
	case StoragePostgres:
		if c.PostgresURL == "" {
			return s, Wrong("postgres_url", "is required with storage postgres")
		}
	default:
		return s, Wrong("storage", "unknown storage %q: use bolt (default) or postgres", c.Storage)
	}
	return s, nil
}

func (c Server) hsm() (*HSM, error) {
	if c.HSMLib == "" {
		for name, v := range map[string]string{"hsm_token_label": c.HSMTokenLabel, "hsm_slot": c.HSMSlot, "hsm_pin": c.HSMPIN.Reveal()} {
			if v != "" {
				return nil, Wrong("hsm_lib", "is required: %s is set but no PKCS#11 library is", name)
			}
		}
		return nil, nil
	}
	h := &HSM{Lib: c.HSMLib, TokenLabel: c.HSMTokenLabel, PIN: c.HSMPIN, KeyLabel: c.HSMKeyLabel,
		Mechanism: c.HSMMechanism, HMACKeyLabel: c.HSMHMACKeyLabel, OAEPHash: c.HSMRSAOAEPHash, SigningKeyLabel: c.HSMSigningKeyLabel}
	fi, err := os.Stat(c.HSMLib)
	switch {
	case err != nil:
		return nil, Wrong("hsm_lib", "%s", fileProblem(err))
	case fi.IsDir():
		return nil, Wrong("hsm_lib", "%s is a directory, not a PKCS#11 library", c.HSMLib)
	}
	if c.HSMSlot != "" {
		slot, err := strconv.ParseUint(c.HSMSlot, 10, 32)
		if err != nil {
			return nil, Wrong("hsm_slot", "%q is not a slot number", c.HSMSlot)
		}
		s := uint(slot)
		h.Slot = &s
	}
	if h.TokenLabel == "" && h.Slot == nil {
		return nil, Wrong("hsm_token_label", "is required with hsm_lib (or set hsm_slot)")
	}
	if h.PIN == "" {
		return nil, Wrong("hsm_pin", "is missing: the HSM token's user PIN is required with hsm_lib")
	}
	if h.KeyLabel == "" {
		return nil, Wrong("hsm_key_label", "is required with hsm_lib")
	}
	switch h.Mechanism {
	case "":
		h.Mechanism = "aes_gcm"
	case "aes_gcm", "aes_cbc_pad_hmac", "rsa_oaep":
	default:
		return nil, Wrong("hsm_mechanism", "%q: use aes_gcm (default), aes_cbc_pad_hmac or rsa_oaep", h.Mechanism)
	}
	switch h.OAEPHash {
	case "", "sha256", "sha1":
	default:
		return nil, Wrong("hsm_rsa_oaep_hash", "%q: use sha256 (default) or sha1", h.OAEPHash)
	}
	if h.HMACKeyLabel != "" && h.HMACKeyLabel == h.KeyLabel {
		return nil, Wrong("hsm_hmac_key_label", "%q must differ from hsm_key_label", h.HMACKeyLabel)
	}
	if h.SigningKeyLabel != "" && h.SigningKeyLabel == h.KeyLabel {
		return nil, Wrong("hsm_signing_key_label", "%q must differ from hsm_key_label (one key, one purpose)", h.SigningKeyLabel)
	}
	return h, nil
}

// fips enforces fips_mode: Go's FIPS 140-3 mode must be on.
func (c Server) fips() (bool, error) {
	if err := fips.Check(c.FIPSMode); err != nil {
		return false, Wrong("fips_mode", "is true but Go's FIPS 140-3 mode is off: start the server with GODEBUG=fips140=on (or only), or build it with GOFIPS140=v1.0.0")
	}
	return c.FIPSMode, nil
}

// entropy: augmentation needs an HSM; dev mode may bring its own.
func (c Server) entropy(m Mode) (bool, error) {
	switch c.EntropyMode {
	case "":
		return c.HSMLib != "", nil
	case "augmentation":
		if c.HSMLib == "" && !m.Dev {
			return false, Wrong("entropy_mode", "augmentation needs an HSM: set hsm_lib")
		}
		return true, nil
	case "off":
		return false, nil
	}
	return false, Wrong("entropy_mode", "%q: use augmentation or off", c.EntropyMode)
}

// durationSetting parses the duration setting name: positive and, when
// between is set ("1s and 15m"), from lo to hi.
func durationSetting(name, v, example string, lo, hi time.Duration, between string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, Wrong(name, "%q is not a duration (e.g. %s)", v, example)
	}
	if between != "" && (d < lo || d > hi) {
		return 0, Wrong(name, "%s must be between %s", v, between)
	}
	if d <= 0 {
		return 0, Wrong(name, "%q must be positive", v)
	}
	return d, nil
}

func (c Server) sessions() (ttl, life, idle time.Duration, err error) {
	if ttl, err = durationSetting("access_token_ttl", c.AccessTokenTTL, "90s, 5m", time.Second, 15*time.Minute, "1s and 15m"); err != nil {
		return
	}
	if life, err = durationSetting("session_lifetime", c.SessionLifetime, "90s, 5m, 12h", 0, 0, ""); err != nil {
		return
	}
	if idle, err = durationSetting("idle_timeout", c.IdleTimeout, "90s, 5m, 12h", 0, 0, ""); err != nil {
		return
	}
	return ttl, life, idle, nil
}

// Bounds of the approval settings.
const (
	maxPolicyChangeApprovals = 10
	minApprovalTTL           = time.Minute
	maxApprovalTTL           = 30 * 24 * time.Hour
)

func (c Server) approvals() (int, time.Duration, error) {
	if c.PolicyChangeApprovals < 0 || c.PolicyChangeApprovals > maxPolicyChangeApprovals {
		return 0, 0, Wrong("policy_change_approvals", "%d must be between 0 and %d", c.PolicyChangeApprovals, maxPolicyChangeApprovals)
	}
	ttl, err := durationSetting("approval_ttl", c.ApprovalTTL, "24h, 90m", minApprovalTTL, maxApprovalTTL, "1m and 720h")
	return int(c.PolicyChangeApprovals), ttl, err
}

// Bounds of the approval store settings.
const (
	maxApprovalMaxPending = 100_000
	minApprovalRetention  = time.Hour
	maxApprovalRetention  = 10 * 366 * 24 * time.Hour
)

func (c Server) approvalStore() (int, time.Duration, error) {
	if c.ApprovalMaxPending < 1 || c.ApprovalMaxPending > maxApprovalMaxPending {
		return 0, 0, Wrong("approval_max_pending", "%d must be between 1 and %d", c.ApprovalMaxPending, maxApprovalMaxPending)
	}
	d, err := durationSetting("approval_retention", c.ApprovalRetention, "720h", minApprovalRetention, maxApprovalRetention, "1h and 87840h")
	return int(c.ApprovalMaxPending), d, err
}

func (c Server) limits() error {
	if c.MaxRequestBytes <= 0 {
		return Wrong("max_request_bytes", "%d must be positive", c.MaxRequestBytes)
	}
	if c.AuditMaxBytes < 0 {
		return Wrong("audit_max_bytes", "%d must not be negative", c.AuditMaxBytes)
	}
	return nil
}

func (c Server) restore() (Restore, error) {
	r := Restore{MaxBytes: c.RestoreMaxBytes}
	if r.MaxBytes <= 0 {
		return r, Wrong("restore_max_bytes", "%d must be positive", c.RestoreMaxBytes)
	}
	for _, d := range []struct {
		name, v string
		to      *time.Duration
	}{{"restore_timeout", c.RestoreTimeout, &r.Timeout}, {"restore_retention", c.RestoreRetention, &r.Retention}} {
		v, err := durationSetting(d.name, d.v, "30m, 168h", 0, 0, "")
		if err != nil {
			return r, err
		}
		*d.to = v
	}
	return r, nil
}

// trustedProxies parses trusted_proxies: CIDRs, or single addresses (a /32
// or /128).
func (c Server) trustedProxies() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.TrustedProxies))
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			if p.Masked() != p {
				return nil, Wrong("trusted_proxies", "%q has host bits set (did you mean %s?)", s, p.Masked())
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, Wrong("trusted_proxies", "%q is not a CIDR (10.0.0.0/8, fd00::/8) or an IP address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
