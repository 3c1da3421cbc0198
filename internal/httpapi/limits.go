package httpapi

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/clientaddr"
)

// Per-address limits for the routes that need no token, and for requests
// to the other routes that fail authentication: without them any client
// could fill the audit disk (every request is one audit line) or keep the
// TEE busy producing attestation reports. Authenticated requests are
// limited by who the caller is; these only by where it comes from (an
// IPv4 address or an IPv6 /64, see clientaddr).
//
// Defaults: 20 requests a second with bursts of 100 for the unauthenticated
// routes together, and 2 a second with bursts of 10 for attestation (each
// asks the hardware for a signed report).
type Limits struct {
	// PublicRate and PublicBurst bound unauthenticated requests per client
	// address; a negative rate turns the limit off.
	PublicRate  float64
	PublicBurst int
	// AttestRate and AttestBurst bound GET /v1/sys/attestation per address.
	AttestRate  float64
	AttestBurst int
	// Now is the limiters' clock; nil is time.Now. Tests stop it, so that
	// no bucket refills while they count refusals.
	Now func() time.Time
}

func (l Limits) withDefaults() Limits {
	if l.PublicRate == 0 {
		l.PublicRate, l.PublicBurst = 20, 100
	}
	if l.AttestRate == 0 {
		l.AttestRate, l.AttestBurst = 2, 10
	}
	if l.Now == nil {
		l.Now = time.Now
	}
	return l
}

// maxLimited bounds the addresses remembered; past it, idle ones go.
const maxLimited = 50000

// auditRejectedEvery: of the requests refused to one address, one in this
// period is audited, so that a flood leaves a trace but not a full disk.
const auditRejectedEvery = 10 * time.Second

type addrLimiter struct {
	rate  rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*addrState
}

type addrState struct {
	lim          *rate.Limiter
	lastAudited  time.Time
	rejected     int // refused since the last audited refusal
	lastTouchedN int64
}

func newAddrLimiter(r float64, burst int) *addrLimiter {
	if r < 0 {
		return nil
	}
	return &addrLimiter{rate: rate.Limit(r), burst: max(burst, 1), m: map[string]*addrState{}}
}

// take spends one request of addr at now. It returns 0 when allowed, else
// how long to wait, and whether this refusal is to be audited (with how
// many were refused silently before it).
func (l *addrLimiter) take(addr string, now time.Time) (wait time.Duration, audit bool, silent int) {
	if l == nil {
		return 0, false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.m[addr]
	if st == nil {
		if len(l.m) >= maxLimited {
			l.pruneLocked(now)
		}
		st = &addrState{lim: rate.NewLimiter(l.rate, l.burst)}
		l.m[addr] = st
	}
	st.lastTouchedN = now.UnixNano()
	r := st.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		st.rejected++
		if now.Sub(st.lastAudited) >= auditRejectedEvery {
			st.lastAudited = now
			silent, st.rejected = st.rejected-1, 0
			return d, true, silent
		}
		return d, false, 0
	}
	return 0, false, 0
}

// pruneLocked drops addresses whose bucket is full again (idle ones).
func (l *addrLimiter) pruneLocked(now time.Time) {
	for k, st := range l.m {
		if st.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
	if len(l.m) >= maxLimited { // all busy: forget the least recent half
		cut := now.UnixNano() - int64(time.Second)
		for k, st := range l.m {
			if st.lastTouchedN < cut {
				delete(l.m, k)
			}
		}
	}
}

// unauthenticated reports the routes that run without a token.
func unauthenticated(rt route) bool { return rt.access == public || rt.access == unsealed }

// throttle refuses a request over its address's limit: 429 with
// Retry-After in whole seconds. It writes the answer, and an audit line for
// one refusal in auditRejectedEvery, and reports whether it did.
func (a *API) throttle(rt route, w http.ResponseWriter, r *http.Request) bool {
	if !unauthenticated(rt) {
		return false
	}
	now := a.limitNow()
	ip := clientaddr.Key(remoteIP(r))
	lim := a.publicLimit
	if rt.op == "sys.attestation" {
		if wait, aud, silent := a.attestLimit.take(ip, now); wait > 0 {
			a.refuse(rt, w, r, wait, aud, silent, now)
			return true
		}
	}
	wait, aud, silent := lim.take(ip, now)
	if wait <= 0 {
		return false
	}
	a.refuse(rt, w, r, wait, aud, silent, now)
	return true
}

// throttleFailedAuth charges a request to an authenticated route that
// failed authentication to its address's bucket, the one the
// unauthenticated routes share: past the limit the answer is 429 instead
// of 401, and only one refusal in auditRejectedEvery is audited, so a
// flood of bad or missing credentials cannot fill the audit disk. A
// request that authenticates is never charged (the hot path pays
// nothing). It writes the answer and reports whether it did.
func (a *API) throttleFailedAuth(rt route, w http.ResponseWriter, r *http.Request, err error) bool {
	if err == nil || unauthenticated(rt) || !errors.Is(err, errUnauthenticated) {
		return false
	}
	now := a.limitNow()
	wait, aud, silent := a.publicLimit.take(clientaddr.Key(remoteIP(r)), now)
	if wait <= 0 {
		return false
	}
	a.refuse(rt, w, r, wait, aud, silent, now)
	return true
}

func (a *API) refuse(rt route, w http.ResponseWriter, r *http.Request, wait time.Duration, aud bool, silent int, now time.Time) {
	secs := int(math.Ceil(wait.Seconds()))
	if aud {
		a.d.Logger.Warn("requests without valid credentials rate-limited", "remote_addr", remoteIP(r), "op", rt.op,
			"refused_since_last_report", silent+1, "retry_after_seconds", max(secs, 1))
	}
	if aud && a.d.Audit != nil {
		e := &audit.Entry{
			Time: now.UTC(), RequestID: requestID(r), RemoteAddr: remoteIP(r),
			Method: r.Method, Path: r.URL.Path, Operation: rt.op, Status: http.StatusTooManyRequests,
			ErrorCode: "rate_limited",
		}
		if err := a.d.Audit.Record(r.Context(), e); err != nil {
			a.d.Logger.Error("audit failed for a rate-limited request", "request_id", requestID(r), "err", err)
		}
	}
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	writeJSON(w, http.StatusTooManyRequests, errorBody{Error: errorDetail{Code: "rate_limited",
		Message: "too many requests from this address; retry in " + strconv.Itoa(max(secs, 1)) + " s"}})
}
