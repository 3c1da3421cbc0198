package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/tee"
)

func runAudit(g *globals, args []string) error {
	return sub(g, "audit", args, map[string]func(*globals, []string) error{
		"verify": auditVerify, "hash": auditHash,
	})
}

// auditVerify checks one log file, or a rotated set given oldest first.
// Exit status: 0 verified; 1 tampered (or an error); 3 intact but not
// fully verified (lines no trusted signature covers, no trusted key, an
// anchor that could not be compared), with what is missing on stderr.
func auditVerify(g *globals, args []string) error {
	var pubHex, minHash string
	var fetch bool
	var minSeq uint64
	files, err := g.flags("audit verify", args, func(fs *flag.FlagSet) {
		fs.StringVar(&pubHex, "public-key", "", "the vault's audit public key, KEYID:HEX or HEX (from GET /v1/sys/audit/public-key)")
		fs.BoolVar(&fetch, "fetch-key", false, "fetch the audit public key and head (seq and hash) from the server at MOONVAULT_ADDR")
		fs.Uint64Var(&minSeq, "min-seq", 0, "anchor: fail if the log ends before this sequence number (detects truncation at a checkpoint)")
		fs.StringVar(&minHash, "min-hash", "", "anchor: hex SHA-256 of the line at -min-seq (head_hash); fail if it differs (detects a rewritten log)")
	})
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usageError{"usage: moonvault audit verify [-public-key KEY | -fetch-key] [-min-seq N -min-hash HEX] FILE [FILE...]"}
	}
	if minHash != "" && minSeq == 0 {
		return usageError{"-min-hash needs -min-seq (the sequence number of the line it is the hash of)"}
	}
	if minHash != "" {
		if b, err := hex.DecodeString(minHash); err != nil || len(b) != 32 {
			return usageError{"-min-hash must be 64 hex characters (a SHA-256)"}
		}
	}
	keys := map[string]ed25519.PublicKey{}
	if fetch {
		var out struct {
			KeyID     string `json:"key_id"`
			PublicKey string `json:"public_key"`
			HeadSeq   uint64 `json:"head_seq"`
			HeadHash  string `json:"head_hash"`
		}
		if err := call(g, "GET", "/v1/sys/audit/public-key", nil, &out); err != nil {
			return err
		}
		if pubHex != "" && !strings.EqualFold(keyHex(pubHex), out.PublicKey) {
			return errors.New("the server's audit public key differs from -public-key")
		}
		pubHex = out.KeyID + ":" + out.PublicKey
		if minSeq == 0 {
			// The server's head: a copy that stops short of it was
			// truncated, and one whose line there differs was rewritten.
			minSeq, minHash = out.HeadSeq, out.HeadHash
		}
	}
	if pubHex != "" {
		id, h, ok := strings.Cut(pubHex, ":")
		if !ok {
			id, h = "", pubHex
		}
		pub, err := hex.DecodeString(h)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return usageError{"-public-key must be hex of a 32-byte Ed25519 key"}
		}
		keys[id] = pub
	}
	if len(files) == 1 {
		// One name stands for the live file and its rotated predecessors.
		if set, err := audit.RotatedFiles(files[0]); err == nil && len(set) > 0 {
			files = set
		}
	}
	rep, err := audit.VerifyFiles(files, keys, audit.VerifyOptions{MinSeq: minSeq, MinHash: minHash})
	var unverified *audit.UnverifiedError
	if err != nil && !errors.As(err, &unverified) {
		return fmt.Errorf("audit log is NOT intact: %w", err)
	}
	if perr := g.print(rep); perr != nil {
		return perr
	}
	switch {
	case minSeq == 0:
		fmt.Fprintln(g.stderr, "note: no anchor (-min-seq/-min-hash or -fetch-key): a copy cut exactly after a checkpoint would not be noticed")
	case minHash == "":
		fmt.Fprintln(g.stderr, "note: -min-seq without -min-hash: the length of the log is anchored, not its content")
	}
	if unverified != nil {
		fmt.Fprintln(g.stderr, "audit log is intact but NOT fully verified:")
		for _, u := range unverified.Unverified {
			fmt.Fprintln(g.stderr, "  - "+u)
		}
		return exitCode(3)
	}
	return nil
}

// keyHex returns the HEX of a KEYID:HEX or HEX public key.
func keyHex(s string) string {
	if _, h, ok := strings.Cut(s, ":"); ok {
		return h
	}
	return s
}

func auditHash(g *globals, args []string) error {
	pos, err := g.flags("audit hash", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: moonvault audit hash VALUE"}
	}
	var out map[string]string
	if err := call(g, "POST", "/v1/sys/audit/hash", map[string]string{"input": pos[0]}, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	fmt.Fprintln(g.stdout, out["hash"])
	return nil
}

func runAttest(g *globals, args []string) error {
	return sub(g, "attest", args, map[string]func(*globals, []string) error{"verify": attestVerify})
}

// attestVerify asks the server for an attestation bound to a fresh nonce
// and to the TLS key of this very connection, and verifies it: signature
// chain, TCB and revocation collateral (fetched from AMD KDS / Intel PCS),
// debug policy, and the launch measurement against the expected ones.
func attestVerify(g *globals, args []string) error {
	var allowDebug, allowAny, allowUnchecked bool
	var policyFile string
	var measurements measurementFlag
	if _, err := g.flags("attest verify", args, func(fs *flag.FlagSet) {
		fs.Var(&measurements, "measurement", "expected launch measurement, 96 hex digits (SEV-SNP MEASUREMENT, TDX MRTD); may be repeated")
		fs.StringVar(&policyFile, "policy", "", `JSON file of allowed measurements: {"measurements": ["hex", ...]}`)
		fs.BoolVar(&allowAny, "allow-any-measurement", false, "accept any measurement (proves a genuine TEE, not which workload)")
		fs.BoolVar(&allowUnchecked, "allow-unchecked-collateral", false, "verify offline: do not fetch or check the TCB status and revocation lists")
		fs.BoolVar(&allowDebug, "allow-debug", false, "accept a debug-enabled guest (testing only)")
	}); err != nil {
		return err
	}
	opts := tee.VerifyOptions{AllowDebug: allowDebug, AllowAnyMeasurement: allowAny, AllowUncheckedCollateral: allowUnchecked, Measurements: measurements}
	if policyFile != "" {
		p, err := tee.LoadMeasurementPolicy(policyFile)
		if err != nil {
			return err
		}
		opts.Measurements = append(opts.Measurements, p.Measurements...)
	}
	if len(opts.Measurements) == 0 && !allowAny {
		return errors.New("give the expected measurement (-measurement HEX or -policy FILE), or -allow-any-measurement to check only that the TEE is genuine")
	}
	if !allowUnchecked {
		opts.FetchCollateral()
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	req, err := http.NewRequest("GET", c.addr+"/v1/sys/attestation?nonce="+url.QueryEscape(hex.EncodeToString(nonce)), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return errors.New("no TLS peer certificate")
	}
	spki := peerSPKI(resp.TLS)
	var att tee.Attestation
	if err := json.NewDecoder(resp.Body).Decode(&att); err != nil {
		return fmt.Errorf("decode attestation: %w", err)
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("attestation request failed: HTTP %d", resp.StatusCode)
	}
	err = tee.Verify(&att, nonce, spki, opts)
	if errors.Is(err, tee.ErrNoTEE) {
		fmt.Fprintln(g.stdout, "The server reports no TEE (\"tee\":\"none\"): nothing to verify; do not treat it as confidential.")
		return exitCode(3)
	}
	if err != nil {
		return fmt.Errorf("attestation does NOT verify: %w", err)
	}
	m, _ := tee.Measurement(&att)
	fmt.Fprintf(g.stdout, "Attestation verified: %s report bound to this TLS key and nonce, measurement %x.\n", att.TEE, m)
	if allowAny {
		fmt.Fprintln(g.stdout, "Warning: the measurement was not compared with an expected value (-allow-any-measurement).")
	}
	if allowUnchecked {
		fmt.Fprintln(g.stdout, "Warning: the TCB status and revocation lists were not checked (-allow-unchecked-collateral).")
	}
	return nil
}

// measurementFlag collects repeated -measurement values.
type measurementFlag [][]byte

func (m *measurementFlag) String() string { return fmt.Sprint(len(*m), " measurements") }

func (m *measurementFlag) Set(s string) error {
	b, err := tee.ParseMeasurement(s)
	if err != nil {
		return err
	}
	*m = append(*m, b)
	return nil
}

func peerSPKI(cs *tls.ConnectionState) []byte {
	return cs.PeerCertificates[0].RawSubjectPublicKeyInfo
}
