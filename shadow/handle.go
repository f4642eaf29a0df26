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
	log := func() *slog.Logger { return r.log.With("request_id", ev.ID, "service", ev.Service, "route", ev.Route) }
	svc, ok := r.services[ev.Service]
	if !ok {
		// The consumer filters on the routes file's services; this only
		// happens when another replayer changed the filter.
		r.m.replays.WithLabelValues("-", "-", outcomeUnknownSvc).Inc() // bounded labels
		r.ack(msg, log)
		return
	}
	route, outcome := svc.resolve(&ev)
	routeLabel := "-"
	if route != nil {
		routeLabel = route.Route
	}
	if outcome == "" {
		outcome = r.policy(&ev, route)
	}
	if outcome != "" {
		r.m.replays.WithLabelValues(ev.Service, routeLabel, outcome).Inc()
		if r.log.Enabled(ctx, slog.LevelDebug) {
			log().Debug("request not replayed", "outcome", outcome)
		}
		r.ack(msg, log)
		return
	}

	p.start(msg)
	defer p.stop()
	res, err := r.replay(ctx, svc, route, &ev)
	if err != nil { // stopping: let another replayer (or the next start) take it
		r.nak(msg)
		return
	}
	// The replay is done: store it even if a stop began meanwhile.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.publish(pctx, &res); err != nil {
		r.m.publishFailures.Inc()
		delay := r.nakDelay(msg)
		log().Warn("publish shadow result failed; will retry", "err", err, "retry_in", delay)
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			log().Warn("nak request", "err", nerr)
		}
		return
	}
	r.ack(msg, log)

	outcome = outcomeReplayed
	switch res.CubeError {
	case "":
	case ErrTextTimeout:
		outcome = outcomeTimeout
	case ErrTextCircuitOpen:
		outcome = outcomeCircuitOpen
	default:
		outcome = outcomeCubeError
	}
	r.m.replays.WithLabelValues(ev.Service, routeLabel, outcome).Inc()
	r.m.latency.WithLabelValues(ev.Service, routeLabel, "legacy").Observe(ev.Response.Latency.Seconds())
	if res.Cube != nil {
		r.m.latency.WithLabelValues(ev.Service, routeLabel, "cube").Observe(res.Cube.Latency.Seconds())
	}
	if res.Secondary != nil {
		r.m.latency.WithLabelValues(ev.Service, routeLabel, "secondary").Observe(res.Secondary.Latency.Seconds())
	}
	if res.Freshness.Stale {
		r.m.stale.WithLabelValues(ev.Service, routeLabel).Inc()
	}
}

// resolve finds the route of a captured request: the template the capture
// recorded, else the template its path matches.
func (s *service) resolve(ev *schemas.RequestEvent) (*routes.Route, string) {
	for i := range s.spec.Routes {
		rt := &s.spec.Routes[i]
		if rt.Route != ev.Route {
			continue
		}
		if len(rt.Methods) > 0 && !slices.Contains(rt.Methods, ev.Method) {
			if m, ok := s.spec.Match(ev.Method, ev.Path); ok {
				return m, ""
			}
			return rt, outcomeSkipMethod
		}
		return rt, ""
	}
	if m, ok := s.spec.Match(ev.Method, ev.Path); ok {
		return m, ""
	}
	return nil, outcomeUnknownRoute
}

// policy applies the route's replay policy and, to imported traffic, its
// sampling; "" means replay.
func (r *Replayer) policy(ev *schemas.RequestEvent, rt *routes.Route) string {
	if rt.Replay == routes.ReplayIdempotentOnly && !idempotent(ev) {
		return outcomeSkipPolicy
	}
	// The tap and the middleware already sampled at capture with the same
	// route setting (by user); sampling again would square the share. Only
	// imported traffic is sampled here.
	if ev.Source == schemas.SourceImport && !sampled(ev.ID, rt.Sample) {
		return outcomeSkipSample
	}
	if ev.BodyTruncated {
		return outcomeSkipTrunc
	}
	return ""
}

// idempotent reports whether a request may be replayed on an idempotent-only
// route: GET and HEAD, or any method the client marked with an
// Idempotency-Key header.
func idempotent(ev *schemas.RequestEvent) bool {
	switch ev.Method {
	case http.MethodGet, http.MethodHead:
		return true
	}
	return ev.Headers.Get("Idempotency-Key") != ""
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

// replay waits for freshness, then replays ev to the cube and (in parallel)
// the secondary. The only error is errShutdown.
func (r *Replayer) replay(ctx context.Context, svc *service, rt *routes.Route, ev *schemas.RequestEvent) (schemas.ShadowResult, error) {
	res := schemas.ShadowResult{
		V:         schemas.Version,
		RequestID: ev.ID,
		Service:   ev.Service,
		Route:     rt.Route,
		Request:   *ev,
		Legacy:    ev.Response,
	}
	// The legacy answer travels once, as Legacy.
	res.Request.Response = schemas.HTTPResponse{Status: ev.Response.Status, Latency: ev.Response.Latency}
	if svc.watermarkKey != "" {
		start := time.Now()
		mark, stale, err := r.marks.wait(ctx, svc.watermarkKey, ev.CapturedAt, svc.freshnessWait)
		if err != nil {
			return res, errShutdown
		}
		waited := time.Since(start)
		res.Freshness = schemas.Freshness{Target: svc.spec.SyncTarget, Watermark: mark, Waited: waited, Stale: stale}
		r.m.freshnessWait.WithLabelValues(ev.Service).Observe(waited.Seconds())
	}
	dry := rt.Replay == routes.ReplayDryRun
	var wg sync.WaitGroup
	var secErr error
	if svc.secondary != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Secondary, res.SecondaryError, secErr = r.call(ctx, svc.secondary, ev, dry)
		}()
	}
	var err error
	res.Cube, res.CubeError, err = r.call(ctx, svc.cube, ev, dry)
	wg.Wait()
	if err != nil || secErr != nil {
		return res, errShutdown
	}
	res.ReplayedAt = r.cfg.Now().UTC()
	return res, nil
}

// call sends one replay to t. It returns the answer, or the error text for
// the result; the error is errShutdown only.
func (r *Replayer) call(ctx context.Context, t *target, ev *schemas.RequestEvent, dry bool) (*schemas.HTTPResponse, string, error) {
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, "", errShutdown
	}
	defer func() { <-t.sem }()
	// Asked only now, right before sending: requests queued behind the
	// concurrency limit must see a breaker that opened meanwhile.
	ok, probe := t.breaker.allow()
	if !ok {
		return nil, ErrTextCircuitOpen, nil
	}
	if err := t.bucket.wait(ctx); err != nil {
		t.breaker.cancel(probe)
		return nil, "", errShutdown
	}
	req, err := r.newRequest(ctx, t, ev, dry)
	if err != nil {
		t.breaker.cancel(probe)
		return nil, err.Error(), nil
	}
	rctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req = req.WithContext(rctx)
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
			t.breaker.done(probe, !unavailable(resp.StatusCode))
			return out, "", nil
		}
	}
	if ctx.Err() != nil {
		t.breaker.cancel(probe)
		return nil, "", errShutdown
	}
	t.breaker.done(probe, false)
	if rctx.Err() != nil || isTimeout(err) {
		return nil, ErrTextTimeout, nil
	}
	return nil, transportError(err), nil
}

// newRequest builds the replay: the captured method, path, query, body and
// headers (minus strippedHeaders), the target's header rewrites, its service
// credentials and, for dry-run routes, X-Shadow-Request: 1.
func (r *Replayer) newRequest(ctx context.Context, t *target, ev *schemas.RequestEvent, dry bool) (*http.Request, error) {
	u := *t.base
	u.Path = strings.TrimSuffix(u.Path, "/") + ev.Path
	u.RawPath = ""
	u.RawQuery = ev.Query
	var body io.Reader
	if len(ev.Body) > 0 {
		body = bytes.NewReader(ev.Body)
	}
	req, err := http.NewRequestWithContext(ctx, ev.Method, u.String(), body)
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
	if _, err := r.js.Publish(ctx, subj, data, jetstream.WithMsgID(res.RequestID)); err != nil {
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
