package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// jsonEncode is what appendEntry must equal: encoding/json, HTML escaping
// off, no trailing newline.
func jsonEncode(t *testing.T, e *Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendEntryMatchesEncodingJSON(t *testing.T) {
	full := sampleEntry(7)
	full.Time = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	full.Phase = PhaseResponse
	full.ErrorCode = "audit_unavailable"
	full.APIKeyID = "key-1"
	full.Hashed = map[string]string{"z": "1", "a": "2", "m\"q": "<&>"}
	full.Signed = []Signed{{Kind: "message", Hash: "0xab"}, {Kind: "transaction", Hash: "0xcd"}}
	full.PolicyDecision, full.Policies = "require_approval", "pol_1,pol_2"
	full.Approval, full.ApprovalStatus = "apr_1", "pending"
	for _, e := range []*Entry{
		{Time: time.Unix(0, 0).UTC()},
		full,
		{Time: time.Unix(1, 5).UTC(), Path: "/v1/\x00\x1f\"\\\u2028\u2029\xff<>&é", LatencyMS: 1e-7, Status: -3},
		{Time: time.Unix(1, 0).UTC(), LatencyMS: 1e21},
		{Time: time.Unix(1, 0).UTC(), LatencyMS: 0.125},
		{Time: time.Unix(1, 0).UTC(), LatencyMS: 123456.789},
	} {
		if got, want := appendEntry(nil, e), jsonEncode(t, e); !bytes.Equal(got, want) {
			t.Errorf("appendEntry\n got %s\nwant %s", got, want)
		}
	}
	// NaN cannot be encoded by encoding/json; the latency is left out.
	if got := appendEntry(nil, &Entry{Time: time.Unix(0, 0).UTC(), LatencyMS: math.NaN()}); bytes.Contains(got, []byte("latency")) || !json.Valid(got) {
		t.Errorf("NaN latency: %s", got)
	}
}

func FuzzAppendEntry(f *testing.F) {
	f.Add("req", "/v1/accounts/a/sign-message", "alice", "k", "v", 200, 1.5)
	f.Add("\xff\x00", "\u2028", "\"", "<", ">", -1, 1e-9)
	f.Fuzz(func(t *testing.T, id, path, subject, hk, hv string, status int, lat float64) {
		if math.IsNaN(lat) || math.IsInf(lat, 0) {
			lat = 0
		}
		e := &Entry{Time: time.Unix(int64(status), 0).UTC(), RequestID: id, Path: path, Subject: subject,
			Status: status, LatencyMS: lat, Hashed: map[string]string{hk: hv}, Signed: []Signed{{Kind: hk, Hash: hv}},
			PolicyDecision: hk, Policies: hv, Approval: id, ApprovalStatus: subject}
		if got, want := appendEntry(nil, e), jsonEncode(t, e); !bytes.Equal(got, want) {
			t.Fatalf("appendEntry\n got %s\nwant %s", got, want)
		}
	})
}
