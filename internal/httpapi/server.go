// Package httpapi is the only package that knows HTTP: the REST and JSON-RPC
// handlers, the request path middleware (request id, limits, audit,
// authentication, authorization) and the error model.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/clientaddr"
	"github.com/moonvault/moonvault/internal/connpark"
	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/jsonkeys"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/signpolicy"
	"github.com/moonvault/moonvault/internal/tee"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// Deps are the services the API serves.
type Deps struct {
	Core     *core.Core
	Auth     *auth.Service
	Wallet   *wallet.Service
	Audit    *audit.Log
	Policy   policy.Rules
	Entropy  func() entropy.Stats
	Harden   func() tee.Hardening
	Attester tee.Attester
	// TLSPublicKey returns the DER SubjectPublicKeyInfo of the serving key.
	TLSPublicKey func() ([]byte, error)
	// Rewrap re-wraps every seal-wrapped value (operator rewrap).
	Rewrap  func(ctx context.Context) (int, error)
	Logger  *slog.Logger
	MaxBody int64
	Now     func() time.Time
	// Limits bound the unauthenticated routes, and failed
	// authentications, per client address.
	Limits Limits
	// TrustedProxies may name the client in X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// Operations: snapshots, restore, metrics (operations.go).
	Operations Operations
	// Provenance publishes the key that signs provenance records.
	Provenance ProvenanceKey
	// Policies: transaction policies and approvals (policystep.go).
	Policies Policies
}

// access says what a route needs before its handler runs.
type access int

const (
	public   access = iota // no token; works sealed
	unsealed               // no token; needs the vault unsealed
	authed                 // a valid token or API key; unsealed
	admin                  // an admin user token; unsealed
	// adminExclusive is admin, and runs alone on this node: requests in
	// flight finish first and new ones wait (operator rewrap, which must not
	// race a concurrent write of the values it rewrites).
	adminExclusive
	// adminSelfGated is admin, and takes no gate for its handler, which
	// takes the exclusive gate itself for the step that needs it (a
	// restore: the upload runs alongside other requests, the switch
	// alone; see API.exclusive).
	adminSelfGated
)

type handlerFunc func(*request) (int, any, error)

type route struct {
	method, path, op string
	access           access
	h                handlerFunc
}

// API is the HTTP handler.
type API struct {
	d      Deps
	mux    *http.ServeMux
	routes []route
	// gate lets an exclusive operation run with no other request in flight.
	gate    *gate
	maxBody atomic.Int64
	// publicLimit and attestLimit bound unauthenticated requests per address.
	publicLimit, attestLimit *addrLimiter
	limitNow                 func() time.Time // their clock (Limits.Now)
	clients                  *clientaddr.Resolver
}

// New builds the handler with every route.
func New(d Deps) *API {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.MaxBody <= 0 {
		d.MaxBody = 1 << 20
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	a := &API{d: d, mux: http.NewServeMux(), gate: newGate(), clients: clientaddr.NewResolver(d.TrustedProxies)}
	a.maxBody.Store(d.MaxBody)
	lim := d.Limits.withDefaults()
	a.publicLimit = newAddrLimiter(lim.PublicRate, lim.PublicBurst)
	a.attestLimit = newAddrLimiter(lim.AttestRate, lim.AttestBurst)
	a.limitNow = lim.Now
	a.routes = append(a.table(), a.consoleRoutes()...)
	for _, rt := range a.routes {
		a.mux.Handle(rt.method+" "+rt.path, a.wrap(rt))
	}
	a.mountConsole()
	// Requests to no route are answered, and audited, too.
	a.mux.Handle("/", a.wrap(route{op: "unknown", access: public, h: func(q *request) (int, any, error) {
		return 0, nil, errNotFound("no such endpoint: " + q.Method + " " + q.URL.Path)
	}}))
	return a
}

// Routes lists "METHOD /path" for every route served (checked against
// api/openapi.yaml by a test).
func (a *API) Routes() []string {
	out := make([]string, 0, len(a.routes))
	for _, rt := range a.routes {
		out = append(out, rt.method+" "+rt.path)
	}
	return out
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	id := newRequestID()
	h.Set("X-Request-Id", id)
	info := &reqInfo{id: id}
	if c := a.clients.Client(r.RemoteAddr, r.Header.Values("X-Forwarded-For")); c.IsValid() {
		info.client = c.String()
	}
	r = r.WithContext(context.WithValue(r.Context(), ridKey{}, info))
	r.Body = http.MaxBytesReader(w, r.Body, a.bodyLimit(r))
	a.mux.ServeHTTP(w, r)
}

type ridKey struct{}

// reqInfo is what ServeHTTP learns of a request before routing it.
type reqInfo struct {
	id string
	// client is the client address: the peer, or the address a trusted
	// proxy named (clientaddr).
	client string
}

func requestID(r *http.Request) string {
	if info, _ := r.Context().Value(ridKey{}).(*reqInfo); info != nil {
		return info.id
	}
	return ""
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux; an id is not secret
	return hex.EncodeToString(b[:])
}

// request is what a handler sees.
type request struct {
	*http.Request
	api       *API
	w         http.ResponseWriter // for deadlines only; wrap writes the answer
	principal *identity.Principal
	// audit fields a handler fills in
	account, address string
	hashed           map[string]string
	signed           []audit.Signed
	// audit state of the request path
	op       string
	start    time.Time
	intentOK bool // the request line is durable (state-changing requests)
	// policy decisions, matched policies and approvals (policystep.go)
	decisions, policies        string
	approvalID, approvalStatus string
	// held are results whose limit spend this request reserved; they are
	// released if the answer cannot be audited (nobody gets the signature).
	held []*signpolicy.Result
	// replay is the approval whose request is being run again at its
	// threshold; dry is a policy dry run (policystep.go).
	replay *approval.Approval
	dry    *dryRun
}

func (q *request) ctx() context.Context { return q.Context() }

// hashSecret records an HMAC of a secret-identifying value in the audit line.
func (q *request) hashSecret(field, value string) {
	if q.api.d.Audit == nil || value == "" {
		return
	}
	if q.hashed == nil {
		q.hashed = map[string]string{}
	}
	q.hashed[field] = q.api.d.Audit.HMAC(value)
}

// recordSigned records in the audit line a hash of what was signed
// (issue 13): the EIP-191 message hash, the EIP-712 hash or the
// transaction hash an Ethereum signature answers with; for another chain,
// the SHA-256 of the payload it was asked to sign (message, document or
// encoded transaction/PSBT).
func (q *request) recordSigned(kind string, answer any, in chain.Input) {
	if q.api.d.Audit == nil {
		return
	}
	var hash string
	switch v := answer.(type) {
	case *evm.SignedMessage:
		hash = v.MessageHash
	case *evm.SignedTypedData:
		hash = v.Hash
	case *evm.SignedTransaction:
		hash = v.Hash
	default:
		payload := in.Message
		switch {
		case len(in.Encoded) > 0:
			payload = []byte(in.Encoded)
		case len(in.Document) > 0:
			payload = in.Document
		}
		sum := sha256.Sum256(payload)
		hash = "sha256:" + hex.EncodeToString(sum[:])
	}
	q.signed = append(q.signed, audit.Signed{Kind: kind, Hash: hash})
}

// readOnlyOps are routes that change no state although their method is
// not GET: a signature is released only with the response, which waits
// for the audit line, so nothing happens without a record. A handler that
// commits state on such a route (a policy limit that reserves) must call
// q.recordIntent before it commits.
var readOnlyOps = map[string]bool{
	"accounts.sign_message": true, "accounts.sign_typed_data": true,
	"accounts.sign_transaction": true, "rpc": true, "sys.audit.hash": true,
	"unknown": true,
}

// changesState says whether a route's request line must be durable before
// its handler runs. Unknown routes default to yes: one more fsync is the
// safe side.
func changesState(rt route) bool {
	switch rt.method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return !readOnlyOps[rt.op]
}

// recordIntent makes the request line durable before the handler commits
// anything: what is not audited did not happen (as Vault logs a request
// before serving it). It fails with an error wrapping audit.ErrUnavailable,
// and then the request must be refused unserved.
func (q *request) recordIntent() error {
	a := q.api
	if a.d.Audit == nil || q.intentOK {
		return nil
	}
	e := a.auditEntry(q, audit.PhaseRequest, 0, "")
	if err := a.d.Audit.Record(q.Context(), e); err != nil {
		a.d.Logger.Error("audit failed; request refused before it ran", "request_id", requestID(q.Request), "op", q.op, "err", err)
		return err
	}
	q.intentOK = true
	return nil
}

func (a *API) auditEntry(q *request, phase string, status int, code string) *audit.Entry {
	r := q.Request
	e := &audit.Entry{
		Time: q.start.UTC(), RequestID: requestID(r), RemoteAddr: remoteIP(r),
		Method: r.Method, Path: r.URL.Path, Operation: q.op, Phase: phase,
		Account: q.account, Address: q.address, Status: status, ErrorCode: code,
		Hashed: q.hashed, Signed: q.signed,
		PolicyDecision: q.decisions, Policies: q.policies, Approval: q.approvalID, ApprovalStatus: q.approvalStatus,
	}
	if phase != audit.PhaseRequest {
		e.LatencyMS = float64(time.Since(q.start).Microseconds()) / 1000
	}
	if p := q.principal; p != nil {
		e.Subject, e.SessionID, e.APIKeyID = p.Subject, p.SessionID, p.APIKeyID
	}
	return e
}

// wrap runs the request path for one route: gate on seal state,
// authenticate and authorise, read the body, enter the gate, run the
// handler, audit (fail closed), then write the response.
func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.throttle(rt, w, r) {
			return
		}
		// In flight for the audit log's group commit until the response
		// is written (audit.Options.CountCallers).
		if a.d.Audit != nil {
			a.d.Audit.Enter()
			defer a.d.Audit.Leave()
		}
		start := time.Now()
		q := &request{Request: r, api: a, w: w, op: rt.op, start: start}
		status, body, err := a.serve(rt, q)
		if a.throttleFailedAuth(rt, w, r, err) {
			return
		}
		var hdr http.Header
		var code string
		if err != nil {
			f := a.failed(r, rt.op, err)
			status, code, hdr = f.status, f.code, f.header
			body = errorBody{Error: errorDetail{Code: f.code, Message: f.message, Field: f.field, Policy: f.policy}}
		}
		if a.d.Audit != nil {
			// The outcome is recorded even when the client has gone: the
			// handler ran, and over-recording is the safe side. So while
			// the line becomes durable, the read net/http started on the
			// connection to notice a client going away can wait too
			// (connpark: no read(2) finding nothing, no netpoll wait).
			held := connpark.Hold(r)
			aerr := a.d.Audit.Record(context.WithoutCancel(r.Context()), a.auditEntry(q, audit.PhaseResponse, status, code))
			held.Release()
			if aerr != nil {
				a.d.Logger.Error("audit failed; request refused", "request_id", requestID(r), "op", rt.op, "err", aerr)
				q.releaseAll()
				f := classify(audit.ErrUnavailable)
				a.observe(rt.op, f.status, start)
				writeJSON(w, f.status, errorBody{Error: errorDetail{Code: f.code, Message: f.message}})
				return
			}
		}
		if a.d.Logger.Enabled(r.Context(), slog.LevelDebug) {
			a.d.Logger.Debug("request", "request_id", requestID(r), "op", rt.op, "method", r.Method,
				"path", r.URL.Path, "status", status, "code", code, "latency", time.Since(start).String())
		}
		a.observe(rt.op, status, start)
		for k, v := range hdr {
			w.Header()[k] = v
		}
		if sb, ok := body.(streamBody); ok {
			sb(w)
			return
		}
		if raw, ok := body.(rawJSON); ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(raw)
			return
		}
		writeJSON(w, status, body)
	})
}

// serve admits the request (seal state, credentials, authorisation),
// then runs the handler inside the gate. Nothing that waits on a client
// (reading its body) or on nothing at all (a request without credentials)
// holds or waits for the gate.
func (a *API) serve(rt route, q *request) (int, any, error) {
	epoch := a.gate.epoch.Load()
	if err := a.admit(rt, q); err != nil {
		return 0, nil, err
	}
	if (rt.method == http.MethodGet && rt.access == public) || rt.access == adminSelfGated {
		// Read-only probes (health, seal status, metrics) never wait
		// behind an exclusive operation such as a long restore.
		return a.run(rt, q)
	}
	if err := q.bufferBody(); err != nil {
		return 0, nil, err
	}
	release, err := a.gate.enter(q.ctx(), rt.access == adminExclusive)
	if err != nil {
		return 0, nil, err
	}
	defer release()
	if rt.access >= authed && a.gate.epoch.Load() != epoch {
		// An exclusive operation (a restore) ran since the credentials
		// were checked: check them again, against the data now served.
		if err := a.admit(rt, q); err != nil {
			return 0, nil, err
		}
	}
	return a.run(rt, q)
}

// run runs the handler, after the request line of a state-changing request
// is durable (refused unserved when it cannot be).
func (a *API) run(rt route, q *request) (int, any, error) {
	if changesState(rt) {
		if err := q.recordIntent(); err != nil {
			return 0, nil, err
		}
	}
	return rt.h(q)
}

// admit checks what the route needs before its handler runs: the vault
// unsealed, valid credentials, an admin.
func (a *API) admit(rt route, q *request) error {
	if rt.access >= unsealed && a.d.Core.Sealed() {
		if _, err := a.d.Core.Status(q.ctx()); err != nil {
			return err
		}
		return core.ErrSealed
	}
	if rt.access >= authed {
		p, err := a.authenticate(q.Request)
		if err != nil {
			return err
		}
		q.principal = p
		if rt.access >= admin {
			if err := a.d.Policy.Authorize(p, policy.ActionSysAdmin, nil, a.d.Now()); err != nil {
				return err
			}
		}
	}
	return nil
}

// bufferBody reads the request body (within the body limit) before the
// gate is entered, so that a client sending it slowly holds nothing.
func (q *request) bufferBody() error {
	if q.Body == nil || q.Body == http.NoBody {
		return nil
	}
	data, err := io.ReadAll(q.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return errInvalid("invalid_body", "could not read the request body")
	}
	q.Body = io.NopCloser(bytes.NewReader(data))
	return nil
}

// exclusive runs fn alone on this node, for the handler of an
// adminSelfGated route, after checking the request's credentials again
// (the session may have been revoked while its upload ran).
func (a *API) exclusive(q *request, fn func() error) error {
	release, err := a.gate.enter(q.ctx(), true)
	if err != nil {
		return err
	}
	defer release()
	if err := a.admit(route{access: admin}, q); err != nil {
		return err
	}
	return fn()
}

// authenticate checks the bearer token or API key on every request.
func (a *API) authenticate(r *http.Request) (*identity.Principal, error) {
	if k := r.Header.Get("X-API-Key"); k != "" {
		p, err := a.d.Auth.AuthenticateAPIKey(r.Context(), k)
		if err != nil {
			return nil, authFailure(err)
		}
		return p, nil
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return nil, errUnauthenticated
	}
	p, err := a.d.Auth.Authenticate(r.Context(), tok)
	if err != nil {
		return nil, authFailure(err)
	}
	return p, nil
}

// authFailure keeps dependency failures (storage down) distinct from bad
// credentials: both fail closed, but only the latter is a 401.
func authFailure(err error) error {
	if classify(err).status == 503 {
		return err
	}
	return errUnauthenticated
}

// failed classifies a handler's error and logs what the client is not
// told: a 500 is a bug (or tampered storage) and is logged as an error, a
// 503 as a warning, each with the request id and the cause. The cause is
// an error chain's text, never a stack, and domain errors never carry
// secrets.
func (a *API) failed(r *http.Request, op string, err error) failure {
	f := classify(err)
	switch {
	case f.status == 500:
		a.d.Logger.Error("request failed", "request_id", requestID(r), "op", op, "code", f.code, "err", err.Error())
	case f.status == 503:
		a.d.Logger.Warn("request refused: dependency unavailable", "request_id", requestID(r), "op", op, "code", f.code, "err", err.Error())
	}
	return f
}

// remoteIP is the client address of r (see reqInfo).
func remoteIP(r *http.Request) string {
	if info, _ := r.Context().Value(ridKey{}).(*reqInfo); info != nil && info.client != "" {
		return info.client
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field that is wrong, for invalid input.
	Field string `json:"field,omitempty"`
	// Policy names the transaction policy that refused the request
	// (policy_denied).
	Policy *deniedBy `json:"policy,omitempty"`
}

// deniedBy is the policy that denied a request, and why.
type deniedBy struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

// rawJSON is a body already encoded.
type rawJSON []byte

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusNoContent || body == nil {
		w.WriteHeader(status)
		return
	}
	buf, err := json.Marshal(body)
	if err != nil {
		w.WriteHeader(500)
		_, _ = w.Write([]byte(`{"error":{"code":"internal","message":"internal error"}}`))
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(buf, '\n'))
}

// decode reads a JSON body strictly into v (decodeJSON); a body over the
// size limit answers 413.
func decode(q *request, v any, allowEmpty bool) error {
	data, err := io.ReadAll(q.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return errInvalid("invalid_body", "could not read the request body")
	}
	return decodeJSON(data, v, allowEmpty)
}

// decodeJSON is the one request decoder: one JSON value, unknown fields
// and duplicate keys refused, no trailing data, and errors that never echo
// input values. An
// empty body decodes to the zero value when allowEmpty.
func decodeJSON(data []byte, v any, allowEmpty bool) error {
	if len(bytes.TrimSpace(data)) == 0 {
		if allowEmpty {
			return nil
		}
		return errInvalid("invalid_json", "request body is empty; a JSON object is required")
	}
	if k, dup := jsonkeys.Duplicate(data); dup {
		return errInvalid("invalid_json", "malformed JSON body: duplicate key "+quoteName(k))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errInvalid("invalid_json", "malformed JSON body: "+jsonProblem(err))
	}
	if dec.More() {
		return errInvalid("invalid_json", "malformed JSON body: trailing data after the object")
	}
	return nil
}

// jsonProblem describes a decoding error without echoing input values.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return "field " + te.Field + " has the wrong type (want " + te.Type.String() + ")"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return "not a JSON object"
}

// quoteName quotes a member name for an error message, clipped.
func quoteName(k string) string {
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	b, _ := json.Marshal(k)
	return string(b)
}
