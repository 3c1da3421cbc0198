package audit

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendEntry appends e as a JSON object, byte for byte what encoding/json
// writes with HTML escaping off, without reflection: Record runs on every
// request, and this is its hot path (issue 14). FuzzAppendEntry holds it to
// encoding/json.
func appendEntry(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "request_id", e.RequestID)
	b = appendField(b, "subject", e.Subject)
	b = appendField(b, "session_id", e.SessionID)
	b = appendField(b, "api_key_id", e.APIKeyID)
	b = appendField(b, "remote_addr", e.RemoteAddr)
	b = appendField(b, "method", e.Method)
	b = appendField(b, "path", e.Path)
	b = appendField(b, "operation", e.Operation)
	b = appendField(b, "phase", e.Phase)
	b = appendField(b, "account", e.Account)
	b = appendField(b, "address", e.Address)
	if e.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(e.Status), 10)
	}
	b = appendField(b, "error_code", e.ErrorCode)
	if e.LatencyMS != 0 && !math.IsNaN(e.LatencyMS) && !math.IsInf(e.LatencyMS, 0) {
		b = append(b, `,"latency_ms":`...)
		b = appendFloat(b, e.LatencyMS)
	}
	if len(e.Hashed) > 0 {
		b = append(b, `,"hashed":{`...)
		keys := make([]string, 0, len(e.Hashed))
		for k := range e.Hashed {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, e.Hashed[k])
		}
		b = append(b, '}')
	}
	if len(e.Signed) > 0 {
		b = append(b, `,"signed":[`...)
		for i, s := range e.Signed {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"kind":`...)
			b = appendString(b, s.Kind)
			b = append(b, `,"hash":`...)
			b = appendString(b, s.Hash)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendField(b, "policy_decision", e.PolicyDecision)
	b = appendField(b, "policies", e.Policies)
	b = appendField(b, "approval", e.Approval)
	b = appendField(b, "approval_status", e.ApprovalStatus)
	return append(b, '}')
}

func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

// appendFloat formats as encoding/json does (ES6 number formatting).
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		m := len(b) - n
		if m >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string as encoding/json does with HTML
// escaping off: invalid UTF-8 becomes U+FFFD, and U+2028/U+2029 are
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
