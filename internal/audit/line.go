package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"
)

// Line types. Every line is one JSON object that begins with seq, prev and
// type in that order, so that a reader can link the chain before it parses
// the rest.
const (
	typeRequest    = "request"
	typeCheckpoint = "checkpoint"
	typeRecovery   = "recovery"
	typeStart      = "start"
)

// checkpointDomain separates checkpoint signatures from any other use of the
// audit key (domain separation, as in RFC 8032 §8.3's advice on contexts).
const checkpointDomain = "moonvault-audit-checkpoint-v1"

// formatVersion is written in start lines.
const formatVersion = "moonvault-audit-v1"

// genesisPrev is the prev of the first line of a fresh log.
var genesisPrev [sha256.Size]byte

// Entry is one API request and its outcome. It never holds a secret in the
// clear: values that identify a secret are passed in Hashed, already HMACed
// with Log.HMAC.
type Entry struct {
	Time       time.Time `json:"time"`
	RequestID  string    `json:"request_id,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	SessionID  string    `json:"session_id,omitempty"`
	APIKeyID   string    `json:"api_key_id,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Method     string    `json:"method,omitempty"`
	Path       string    `json:"path,omitempty"`
	Operation  string    `json:"operation,omitempty"`
	// Phase is "request" for the line a state-changing request writes
	// before it runs, "response" for the line written before the answer.
	Phase     string            `json:"phase,omitempty"`
	Account   string            `json:"account,omitempty"`
	Address   string            `json:"address,omitempty"`
	Status    int               `json:"status,omitempty"`
	ErrorCode string            `json:"error_code,omitempty"`
	LatencyMS float64           `json:"latency_ms,omitempty"`
	Hashed    map[string]string `json:"hashed,omitempty"`
	// Signed holds a hash of each thing signed (several for a JSON-RPC
	// batch): what the signature commits to, never the key.
	Signed []Signed `json:"signed,omitempty"`
	// PolicyDecision is the transaction policy decision of a signing
	// request (allow, deny, require_approval; a JSON-RPC batch lists each
	// once, comma-separated) and Policies the ids of the policies that
	// matched, or of the policy a policy request changed.
	PolicyDecision string `json:"policy_decision,omitempty"`
	Policies       string `json:"policies,omitempty"`
	// Approval is the approval the request created, voted on or completed
	// (or a sweep expired), and ApprovalStatus its status afterwards.
	Approval       string `json:"approval,omitempty"`
	ApprovalStatus string `json:"approval_status,omitempty"`
}

// Phases of a request's audit lines.
const (
	PhaseRequest  = "request"
	PhaseResponse = "response"
)

// Signed is a hash of what a request signed: kind "message" (EIP-191
// hash), "typed_data" (EIP-712 hash), "transaction" (transaction hash),
// or a chain's own kind.
type Signed struct {
	Kind string `json:"kind"`
	Hash string `json:"hash"`
}

// startBody is the content of a "start" line: the log was opened, or a
// signing key was installed or removed.
type startBody struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"` // "open", "keys", "keys_cleared"
	Version string    `json:"version"`
	KeyID   string    `json:"key_id,omitempty"`
	Pub     string    `json:"pub,omitempty"` // base64 Ed25519 public key
}

// recoveryBody records that a torn tail was cut from a file at open.
type recoveryBody struct {
	Time           time.Time `json:"time"`
	Sink           string    `json:"sink"`
	ResumedSeq     uint64    `json:"resumed_seq"`
	TruncatedBytes int64     `json:"truncated_bytes"`
	TornFile       string    `json:"torn_file,omitempty"`
}

// appendLine appends one line (without its newline) made of the chain
// prefix and body, a JSON object whose fields follow the prefix.
func appendLine(buf []byte, seq uint64, prev *[sha256.Size]byte, typ string, body []byte) []byte {
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, `,"prev":"`...)
	buf = hex.AppendEncode(buf, prev[:])
	buf = append(buf, `","type":"`...)
	buf = append(buf, typ...)
	buf = append(buf, '"')
	if len(body) > 2 { // body is "{...}": splice its fields in after type
		buf = append(buf, ',')
		buf = append(buf, body[1:]...)
	} else {
		buf = append(buf, '}')
	}
	return buf
}

// checkpointMessage is what a checkpoint signs: the domain, its own seq and
// the hash of the line before it, which commits to the whole chain so far.
func checkpointMessage(seq uint64, prev *[sha256.Size]byte) []byte {
	m := make([]byte, 0, len(checkpointDomain)+8+sha256.Size)
	m = append(m, checkpointDomain...)
	m = binary.BigEndian.AppendUint64(m, seq)
	return append(m, prev[:]...)
}

// appendCheckpoint appends the canonical checkpoint line; an empty keyID
// and nil signer give an unsigned checkpoint (vault sealed).
func appendCheckpoint(buf []byte, seq uint64, prev *[sha256.Size]byte, keyID string, sig []byte) []byte {
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, `,"prev":"`...)
	buf = hex.AppendEncode(buf, prev[:])
	buf = append(buf, `","type":"checkpoint","key_id":`...)
	buf = appendString(buf, keyID)
	buf = append(buf, `,"sig":"`...)
	buf = base64.StdEncoding.AppendEncode(buf, sig)
	return append(buf, `"}`...)
}

// signCheckpoint returns the signature for a checkpoint, or nil without key.
func signCheckpoint(signer ed25519.PrivateKey, seq uint64, prev *[sha256.Size]byte) []byte {
	if len(signer) != ed25519.PrivateKeySize {
		return nil
	}
	return ed25519.Sign(signer, checkpointMessage(seq, prev))
}

// lineHead is the part of a line the chain and the verifier need.
type lineHead struct {
	Seq   *uint64 `json:"seq"`
	Prev  string  `json:"prev"`
	Type  string  `json:"type"`
	KeyID string  `json:"key_id"`
	Sig   *string `json:"sig"`
	Event string  `json:"event"`
	Pub   string  `json:"pub"`
}
