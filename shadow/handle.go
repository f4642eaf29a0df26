package shadow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/schemas"
)

// ShadowRequestHeader marks replays of dry-run routes, so the cube can run
// the request without side effects.
const ShadowRequestHeader = "X-Shadow-Request"

// Errors a replay reports in ShadowResult.CubeError / SecondaryError, besides
// the transport error text.
const (
	ErrTextTimeout     = "timeout"
	ErrTextCircuitOpen = "circuit-open"
)

// strippedHeaders never travel from a capture to a replay: user credentials
// (the capture should never hold them; they are dropped again here),
// hop-by-hop headers, and headers the transport or the replayer sets itself.
var strippedHeaders = []string{
	"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token", "X-Csrf-Token",
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Host", "Content-Length", "Accept-Encoding", ShadowRequestHeader,
}

// errShutdown means the replay was abandoned because the replayer is stopping.
var errShutdown = errors.New("replayer stopping")

// handle processes one request message to its end: ack, nak or term; p
// keeps it in progress meanwhile.
func (r *Replayer) handle(ctx context.Context, msg jetstream.Msg, p *progress) {
	ev, err := schemas.DecodeRequestEvent(msg.Data())
	if err != nil {
		r.deadLetter(msg, err)
		return
	}
	// Built only when something is logged: With on every message costs.
	// It captures the three strings, not ev (which would then live on the
	// heap: the sink's callback keeps log).
	id, service, routeName := ev.ID, ev.Service, ev.Route
	log := func() *slog.Logger { return r.log.With("request_id", id, "service", service, "route", routeName) }
	svc, ok := r.services[ev.Service]
	if !ok {
		// The consumer filters on the routes file's services; this only
		// happens when another replayer changed the filter.
		r.m.replays.WithLabelValues("-", "-", outcomeUnknownSvc).Inc() // bounded labels
		r.ack(msg, log)
		return
	}
	route, ok := svc.resolve(&ev)
	if !ok {
		r.m.replays.WithLabelValues(ev.Service, "-", outcomeUnknownRoute).Inc()
		r.ack(msg, log)
		return
	}
	d := r.policy(&ev, route)
	if d.skip != "" {
		r.skip(ctx, msg, &ev, route, d, log)
		return
	}

	p.start(msg)
	defer p.stop()
	res, retry, err := r.replay(ctx, svc, route, &ev, d, delivery{msg: msg})
	if err != nil { // stopping: let another replayer (or the next start) take it
		r.nak(msg)
		return
	}
	if retry > 0 { // the cube cannot answer now: the request waits in JetStream
		r.m.replays.WithLabelValues(ev.Service, route.Route, outcomeDeferred).Inc()
		if r.log.Enabled(ctx, slog.LevelDebug) {
			log().Debug("cube unavailable; request handed back", "retry_in", retry, "breaker", svc.cube.breaker.State().String())
		}
		if nerr := msg.NakWithDelay(retry); nerr != nil {
			log().Warn("nak request", "err", nerr)
		}
		return
	}
	// What the metrics need is read now: a sink owns res once it has it.
	seen := replaySeen(res)
	if !r.store(ctx, msg, res, log) {
		return
	}
	if seen.outcome == outcomeReplayed && seen.cube >= 0 { // the common case: series looked up once per route
		o := r.m.replayedOf(svc, route)
		o.replays.Inc()
		o.legacy.Observe(ev.Response.Latency.Seconds())
		o.cube.Observe(seen.cube.Seconds())
	} else {
		r.m.replays.WithLabelValues(ev.Service, route.Route, seen.outcome).Inc()
		r.m.latency.WithLabelValues(ev.Service, route.Route, "legacy").Observe(ev.Response.Latency.Seconds())
		if seen.cube >= 0 {
			r.m.latency.WithLabelValues(ev.Service, route.Route, "cube").Observe(seen.cube.Seconds())
		}
	}
	if seen.secondary >= 0 {
		r.m.latency.WithLabelValues(ev.Service, route.Route, "secondary").Observe(seen.secondary.Seconds())
	}
	if seen.recheck != "" {
		r.m.rechecks.WithLabelValues(ev.Service, route.Route, seen.recheck).Inc()
	}
	if seen.stale {
		r.m.stale.WithLabelValues(ev.Service, route.Route).Inc()
	}
}

// seenReplay is what a replay's metrics record of its result.
type seenReplay struct {
	outcome         string
	cube, secondary time.Duration // answer latencies; < 0: no answer
	recheck         string        // recheck outcome; "": no recheck
	stale           bool
}

func replaySeen(res *schemas.ShadowResult) seenReplay {
	s := seenReplay{outcome: outcomeReplayed, cube: -1, secondary: -1, stale: res.Freshness.Stale}
	switch res.CubeError {
	case "":
	case ErrTextTimeout:
		s.outcome = outcomeTimeout
	case ErrTextCircuitOpen:
		s.outcome = outcomeCircuitOpen
	default:
		s.outcome = outcomeCubeError
	}
	if res.Cube != nil {
		s.cube = res.Cube.Latency
	}
	if res.Secondary != nil {
		s.secondary = res.Secondary.Latency
	}
	if res.LegacyRecheck != nil {
		s.recheck = recheckOutcome(res)
	}
	return s
}

// store publishes res and acks msg; when JetStream does not take the
// result it naks msg with a growing delay and reports false. With a Sink,
// res is the sink's from then on: the caller must not touch it again.
func (r *Replayer) store(ctx context.Context, msg jetstream.Msg, res *schemas.ShadowResult, log func() *slog.Logger) bool {
	if r.cfg.Sink != nil {
		// Fused: the sink stores it (batched); the request is acked or
		// nak'ed when it reports. MaxAckPending bounds what is pending.
		r.cfg.Sink.Put(res, res.RequestID, func(err error) {
			if err != nil {
				r.m.publishFailures.Inc()
				delay := r.nakDelay(msg)
				log().Warn("store shadow result failed; will retry", "err", err, "retry_in", delay)
				if nerr := msg.NakWithDelay(delay); nerr != nil {
					log().Warn("nak request", "err", nerr)
				}
				return
			}
			r.ack(msg, log)
		})
		return true
	}
	// The replay is done: store it even if a stop began meanwhile.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.publish(pctx, res); err != nil {
		r.m.publishFailures.Inc()
		delay := r.nakDelay(msg)
		log().Warn("publish shadow result failed; will retry", "err", err, "retry_in", delay)
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			log().Warn("nak request", "err", nerr)
		}
		return false
	}
	r.ack(msg, log)
	return true
}

// skip counts a request the policy does not replay and, unless it was
// sampled out, stores a result with Skipped set (no cube answer) so the
// comparator counts it; the Nats-Msg-Id is the request id as for replays.
func (r *Replayer) skip(ctx context.Context, msg jetstream.Msg, ev *schemas.RequestEvent, rt *routes.Route, d decision, log func() *slog.Logger) {
	if r.log.Enabled(ctx, slog.LevelDebug) {
		log().Debug("request not replayed", "reason", d.skip)
	}
	if d.skip == SkipSampled { // a volume decision, not a policy one: no result
		r.m.skipped.WithLabelValues(ev.Service, rt.Route, d.skip).Inc()
		r.m.replays.WithLabelValues(ev.Service, rt.Route, outcomeSkipped).Inc()
		r.ack(msg, log)
		return
	}
	res := newResult(ev, rt)
	res.Skipped = d.skip
	res.Operation = d.operation
	res.ReplayedAt = r.cfg.Now().UTC()
	if !r.store(ctx, msg, res, log) {
		return
	}
	r.m.skipped.WithLabelValues(ev.Service, rt.Route, d.skip).Inc()
	r.m.replays.WithLabelValues(ev.Service, rt.Route, outcomeSkipped).Inc()
}

// delivery is which delivery of a request a cube call serves: a live
// message's (its delivery count, read only when a failure needs it: it
// is parsed from the reply subject) or a window replay's attempt n. The
// zero delivery is a call that does not defer (secondary, legacy).
type delivery struct {
	msg jetstream.Msg
	n   uint64
}

// deferring reports whether the call may hand the request back.
func (d delivery) deferring() bool { return d.msg != nil || d.n > 0 }

// count is the delivery count (1 on the first delivery).
func (d delivery) count() uint64 {
	if d.msg == nil {
		return d.n
	}
	if md, err := d.msg.Metadata(); err == nil {
		return md.NumDelivered
	}
	return 1
}

// resolve finds the route of a captured request: the template the capture
// recorded, else the template its path matches. A route whose methods do not
// list the request's method is returned with ok (the policy skips it).
func (s *service) resolve(ev *schemas.RequestEvent) (*routes.Route, bool) {
	for i := range s.spec.Routes {
		rt := &s.spec.Routes[i]
		if rt.Route != ev.Route {
			continue
		}
		if len(rt.Methods) > 0 && !slices.Contains(rt.Methods, ev.Method) {
			if m, ok := s.spec.Match(ev.Method, ev.Path); ok {
				return m, true
			}
		}
		return rt, true
	}
	return s.spec.Match(ev.Method, ev.Path)
}

// Reasons a request is not replayed: ShadowResult.Skipped and the reason
// label of shadowcube_shadow_skipped_total.
const (
	// SkipLegacyUnauthorized: legacy answered 401 or 403. The request
	// would run on the cube with the shadow principal's credentials, not
	// the client's, so it is never replayed, whatever the policy.
	SkipLegacyUnauthorized = "legacy-unauthorized"
	// SkipWrite: the route replays reads only (reads, the default, or
	// idempotent-only) and the request is a write.
	SkipWrite = "write"
	// SkipNever: the route's policy is never.
	SkipNever = "never"
	// SkipMethod: the route's methods do not list the request's method.
	SkipMethod = "method"
	// SkipTruncated: the captured body was cut at the capture limit, so
	// the request cannot be replayed faithfully.
	SkipTruncated = "body-truncated"
	// SkipSampled: imported traffic sampled out by the route's sample
	// share; counted, but no result is stored.
	SkipSampled = "sampled-out"
)

// decision is what the policy makes of one request.
type decision struct {
	skip      string // "" = replay
	read      bool   // side-effect free (by method or the route's classifier)
	dry       bool   // send X-Shadow-Request: 1
	operation string // the route's operation key
}

// policy applies the route's methods, its sampling (imported traffic
// only), the credentials rule (never replay what legacy refused with
// 401/403), the replay policy against the request's read/write class, and
// the capture limit.
func (r *Replayer) policy(ev *schemas.RequestEvent, rt *routes.Route) decision {
	d := decision{operation: rt.OperationKeyOf(ev.Method, ev.Query, ev.Body), dry: rt.Replay == routes.ReplayDryRun}
	d.read, _ = rt.Classify(ev.Method, ev.Query, ev.Body)
	switch {
	case len(rt.Methods) > 0 && !slices.Contains(rt.Methods, ev.Method):
		d.skip = SkipMethod
	// The tap and the middleware already sampled at capture with the same
	// route setting (by user); sampling again would square the share. Only
	// imported traffic is sampled here.
	case ev.Source == schemas.SourceImport && !sampled(ev.ID, rt.Sample):
		d.skip = SkipSampled
	case ev.Response.Status == http.StatusUnauthorized || ev.Response.Status == http.StatusForbidden:
		d.skip = SkipLegacyUnauthorized
	case rt.Replay == routes.ReplayNever:
		d.skip = SkipNever
	case !d.read && !rt.ReplaysWrites():
		// An Idempotency-Key makes a retry safe on the same server; it does
		// not make a write safe to run on a shadow.
		d.skip = SkipWrite
	case ev.BodyTruncated:
		d.skip = SkipTruncated
	}
	return d
}

// sampled decides by a hash of the request id, so every replayer (and every
// redelivery) makes the same choice.
func sampled(id string, rate float64) bool {
	if rate >= 1 {
		return true
	}
	if rate <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	x := h.Sum64() // FNV's high bits barely move with the last bytes: finish with splitmix64
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11)/(1<<53) < rate
}

// newResult is the result skeleton of a request: the request (its answer
// reduced to status and latency) and the legacy answer.
func newResult(ev *schemas.RequestEvent, rt *routes.Route) *schemas.ShadowResult {
	res := &schemas.ShadowResult{
		V:         schemas.Version,
		RequestID: ev.ID,
		Service:   ev.Service,
		Route:     rt.Route,
		Request:   *ev,
		Legacy:    ev.Response,
	}
	// The legacy answer travels once, as Legacy.
	res.Request.Response = schemas.HTTPResponse{Status: ev.Response.Status, Latency: ev.Response.Latency}
	return res
}

// replay waits for freshness, then replays ev to the cube and (in parallel)
// the secondary, and asks legacy again when a read's cube answer differs
// from the captured one. retry > 0 means the cube could not be asked or
// gave no real answer: the request goes back to JetStream for that long.
// The only error is errShutdown.
func (r *Replayer) replay(ctx context.Context, svc *service, rt *routes.Route, ev *schemas.RequestEvent, d decision, dl delivery) (res *schemas.ShadowResult, retry time.Duration, err error) {
	if svc.cube.breaker.State() == BreakerOpen {
		return nil, svc.cube.breaker.retryDelay(), nil
	}
	res = newResult(ev, rt)
	res.Operation = d.operation
	if svc.watermarkKey != "" {
		start := time.Now()
		waiting := r.m.freshnessWaiting.WithLabelValues(ev.Service)
		waiting.Inc()
		mark, stale, err := r.marks.wait(ctx, svc.watermarkKey, ev.CapturedAt, svc.freshnessWait)
		waiting.Dec()
		if err != nil {
			return res, 0, errShutdown
		}
		waited := time.Since(start)
		res.Freshness = schemas.Freshness{Target: svc.spec.SyncTarget, Watermark: mark, Waited: waited, Stale: stale}
		r.m.freshnessWait.WithLabelValues(ev.Service).Observe(waited.Seconds())
	}
	// The secondary's call runs beside the cube's; what it shares with
	// this goroutine is allocated only when there is one.
	var sec *secondaryCall
	if svc.secondary != nil {
		sec = &secondaryCall{ev: *ev}
		sec.wg.Add(1)
		go func() {
			defer sec.wg.Done()
			sec.res, sec.err = r.call(ctx, svc.secondary, &sec.ev, d.dry, delivery{})
		}()
	}
	cube, err := r.call(ctx, svc.cube, ev, d.dry, dl)
	if sec != nil {
		sec.wg.Wait()
		res.Secondary, res.SecondaryError = sec.res.resp, sec.res.errText
		if sec.err != nil {
			err = sec.err
		}
	}
	if err != nil {
		return res, 0, errShutdown
	}
	if cube.retry > 0 {
		return res, cube.retry, nil
	}
	res.Cube, res.CubeError = cube.resp, cube.errText
	if d.read && svc.legacy != nil && res.Cube != nil && !sameAnswer(res.Cube, &ev.Response) {
		// A read whose answer moved on since capture: legacy's answer now
		// tells a data change from a cube fault.
		c, err := r.call(ctx, svc.legacy, ev, false, delivery{})
		if err != nil {
			return res, 0, errShutdown
		}
		res.LegacyRecheck = c.resp
		if c.errText != "" {
			r.m.rechecks.WithLabelValues(ev.Service, rt.Route, "error").Inc()
		}
	}
	res.ReplayedAt = r.cfg.Now().UTC()
	return res, 0, nil
}

// secondaryCall is the secondary's replay, run beside the cube's on its
// own copy of the request.
type secondaryCall struct {
	wg  sync.WaitGroup
	ev  schemas.RequestEvent
	res callResult
	err error
}

// sameAnswer reports whether two answers have the same status and body bytes.
func sameAnswer(a, b *schemas.HTTPResponse) bool {
	return a.Status == b.Status && bytes.Equal(a.Body, b.Body)
}

// recheckOutcome labels a recheck: moved-on when legacy now answers as the
// cube did, else differs.
func recheckOutcome(res *schemas.ShadowResult) string {
	if sameAnswer(res.LegacyRecheck, res.Cube) {
		return "moved-on"
	}
	return "differs"
}

// callResult is the outcome of one call: an answer, an error text for the
// result, or, for a deferring call (the cube), a delay after which the
// request should be offered again because the target gave no real answer.
type callResult struct {
	resp    *schemas.HTTPResponse
	errText string
	retry   time.Duration
}

// call sends one replay to t. A non-zero delivery makes the call deferring (the
// cube): while the breaker turns requests away, or the target fails without
// a real answer (transport error, 502/503/504) before it proved healthy or
// before the request's CubeErrorAttempts-th delivery, or times out outside
// a healthy period, it returns a retry delay instead of an error text. The
// error is errShutdown only.
func (r *Replayer) call(ctx context.Context, t *target, ev *schemas.RequestEvent, dry bool, dl delivery) (callResult, error) {
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return callResult{}, errShutdown
	}
	defer func() { <-t.sem }()
	deferring := dl.deferring()
	// Asked only now, right before sending: requests queued behind the
	// concurrency limit must see a breaker that opened meanwhile.
	healthy := t.breaker.healthy.Load()
	done, ok := t.breaker.allow()
	if !ok {
		if deferring {
			return callResult{retry: t.breaker.retryDelay()}, nil
		}
		return callResult{errText: ErrTextCircuitOpen}, nil
	}
	if t.limiter != nil {
		if err := t.limiter.Wait(ctx); err != nil {
			done(errCanceled)
			return callResult{}, errShutdown
		}
	}
	rctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := r.newRequest(rctx, t, ev, dry) // built with its deadline: no WithContext copy
	if err != nil {
		done(errCanceled)
		return callResult{errText: err.Error()}, nil
	}
	start := time.Now()
	resp, err := r.client.Do(req)
	if err == nil {
		var body []byte
		var truncated bool
		body, truncated, err = readBody(resp.Body, resp.ContentLength, r.cfg.MaxBodyBytes)
		resp.Body.Close()
		if err == nil {
			out := &schemas.HTTPResponse{Status: resp.StatusCode, Headers: resp.Header, Body: body, BodyTruncated: truncated, Latency: time.Since(start)}
			r.cfg.Redact.Response(out) // no Set-Cookie or redacted field may reappear in SHADOW_RESULTS, the DLQ or the store
			if !unavailable(resp.StatusCode) {
				done(nil)
				t.breaker.healthy.Store(true)
				return callResult{resp: out}, nil
			}
			done(errFailed)
			if deferring {
				if n := dl.count(); !r.recordFailure(t, healthy, n, true) {
					return callResult{retry: r.failureDelay(t, n)}, nil
				}
			}
			return callResult{resp: out}, nil
		}
	}
	if ctx.Err() != nil {
		done(errCanceled)
		return callResult{}, errShutdown
	}
	done(errFailed)
	timeout := rctx.Err() != nil || isTimeout(err)
	if deferring {
		if n := dl.count(); !r.recordFailure(t, healthy, n, !timeout) {
			return callResult{retry: r.failureDelay(t, n)}, nil
		}
	}
	if timeout {
		return callResult{errText: ErrTextTimeout}, nil
	}
	return callResult{errText: transportError(err)}, nil
}

// recordFailure decides whether a failed call to a deferring target is the
// target's answer: only within a healthy period (a real answer since the
// breaker last opened, and this failure did not open it), and, for
// failures without a real answer, on the CubeErrorAttempts-th delivery.
func (r *Replayer) recordFailure(t *target, healthyBefore bool, delivered uint64, needAttempts bool) bool {
	if !healthyBefore || t.breaker.State() != BreakerClosed {
		return false
	}
	return !needAttempts || delivered >= uint64(r.cfg.CubeErrorAttempts)
}

// failureDelay is the redelivery delay of a request handed back after a
// failure: the breaker's while it turns requests away, else the nak delay
// growing with the delivery count.
func (r *Replayer) failureDelay(t *target, delivered uint64) time.Duration {
	if t.breaker.State() != BreakerClosed {
		return t.breaker.retryDelay()
	}
	return min(r.cfg.NakDelay*time.Duration(min(max(delivered, 1), 30)), 30*time.Second)
}

// newRequest builds the replay: the captured method, path, query, body and
// headers (minus strippedHeaders), the target's header rewrites, its service
// credentials and, for dry-run routes, X-Shadow-Request: 1.
func (r *Replayer) newRequest(ctx context.Context, t *target, ev *schemas.RequestEvent, dry bool) (*http.Request, error) {
	u := *t.base
	prefix := strings.TrimSuffix(u.Path, "/")
	u.Path = prefix + ev.Path
	u.RawPath = ""
	// Dot segments are resolved by the cube's server: the replay must stay
	// under the cube's prefix once they are (no /prefix/../admin).
	if !strings.HasPrefix(ev.Path, "/") || !under(path.Clean(u.Path), prefix) {
		return nil, fmt.Errorf("build replay of %s %q: the path leaves the cube's base path %q", ev.Method, ev.Path, prefix+"/")
	}
	u.RawQuery = ev.Query
	var body io.Reader
	if len(ev.Body) > 0 {
		body = bytes.NewReader(ev.Body)
	}
	var req *http.Request
	var err error
	if plainQuery(ev.Query) {
		// u is what url.Parse(u.String()) gives back (FuzzNewRequest holds
		// it to that): the request takes it as is, without the round trip.
		req, err = http.NewRequestWithContext(ctx, ev.Method, "", body)
		if err == nil {
			u.Host = removeEmptyPort(u.Host) // as NewRequest does
			*req.URL = u
			req.Host = u.Host
		}
	} else {
		// url.Parse cuts a fragment off and refuses control characters.
		req, err = http.NewRequestWithContext(ctx, ev.Method, u.String(), body)
	}
	if err != nil {
		return nil, fmt.Errorf("build replay of %s %s: %w", ev.Method, ev.Path, err)
	}
	for k, vs := range ev.Headers {
		ck := http.CanonicalHeaderKey(k)
		if slices.Contains(strippedHeaders, ck) {
			continue
		}
		req.Header[ck] = vs
	}
	for k, vs := range t.headers {
		if len(vs) == 0 || vs[0] == "" {
			delete(req.Header, k)
			continue
		}
		req.Header[k] = vs
	}
	if t.creds != nil {
		auth, err := t.creds.authorization()
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", t.name, err)
		}
		req.Header.Set("Authorization", auth)
	}
	if dry {
		req.Header.Set(ShadowRequestHeader, "1")
	}
	if ev.TraceParent != "" && req.Header.Get("Traceparent") == "" {
		req.Header.Set("Traceparent", ev.TraceParent)
	}
	return req, nil
}

// plainQuery reports whether a raw query survives url.Parse unchanged:
// no fragment mark, no control character.
func plainQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c < 0x20 || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// removeEmptyPort drops the colon of a host with an empty port, as
// http.NewRequest does.
func removeEmptyPort(host string) string {
	if strings.LastIndex(host, ":") > strings.LastIndex(host, "]") {
		return strings.TrimSuffix(host, ":")
	}
	return host
}

// under reports whether the clean path p is dir or below it.
func under(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// readBody reads at most limit bytes (sized up front when the length is
// known) and reports whether the body was longer.
func readBody(rc io.Reader, length, limit int64) ([]byte, bool, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(max(length+1, 512), limit+1)))
	_, err := buf.ReadFrom(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, false, err
	}
	b := buf.Bytes()
	if int64(len(b)) > limit {
		return b[:limit], true, nil
	}
	return b, false, nil
}

// unavailable reports statuses that say the cube cannot serve at all (they
// count as breaker failures; the answer is still published).
func unavailable(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// transportError is the text of a transport failure without the request
// URL's "Get \"...\":" prefix, e.g. "dial tcp 127.0.0.1:1: connect: connection refused".
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// publish stores the result in SHADOW_RESULTS, de-duplicated by request id.
func (r *Replayer) publish(ctx context.Context, res *schemas.ShadowResult) error {
	return r.publishID(ctx, res, res.RequestID)
}

// publishID stores the result in SHADOW_RESULTS with Nats-Msg-Id msgID.
func (r *Replayer) publishID(ctx context.Context, res *schemas.ShadowResult, msgID string) error {
	bp := r.bufs.Get().(*[]byte)
	data := schemas.AppendShadowResult((*bp)[:0], res)
	defer func() {
		if cap(data) <= 1<<20 { // do not keep the rare huge one
			*bp = data
			r.bufs.Put(bp)
		}
	}()
	// Publish copies the payload into the connection's buffer before it
	// returns, so the buffer can be reused afterwards.
	subj := schemas.ShadowResultSubject(res.Service, res.Route)
	if _, err := r.js.Publish(ctx, subj, data, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish shadow result %s to %s: %w", res.RequestID, subj, err)
	}
	return nil
}

func (r *Replayer) nakDelay(msg jetstream.Msg) time.Duration {
	d := r.cfg.NakDelay
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		d *= time.Duration(min(md.NumDelivered, 30))
	}
	return min(d, 30*time.Second)
}

func (r *Replayer) ack(msg jetstream.Msg, log func() *slog.Logger) {
	if err := msg.Ack(); err != nil {
		log().Warn("ack request", "err", err)
	}
}

// deadLetter copies an undecodable message to dlq.shadow with the reason and
// terminates it, so it is never redelivered.
func (r *Replayer) deadLetter(msg jetstream.Msg, cause error) {
	r.m.replays.WithLabelValues("-", "-", outcomeDeadLetter).Inc()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dl := natsx.DeadLetterFromMsg(schemas.StageShadow, schemas.ReasonUndecodable, msg, cause)
	if err := natsx.PublishDeadLetter(ctx, r.js, &dl, natsx.DeadLetterMsgID(&dl)); err != nil {
		r.log.Error("dead-letter publish failed; will retry", "subject", msg.Subject(), "err", err)
		if nerr := msg.NakWithDelay(r.nakDelay(msg)); nerr != nil {
			r.log.Warn("nak undecodable message", "err", nerr)
		}
		return
	}
	r.log.Warn("undecodable request sent to the dead-letter queue", "subject", msg.Subject(), "err", cause)
	if err := msg.Term(); err != nil {
		r.log.Warn("term undecodable message", "err", err)
	}
}
