package publisher

import (
	"context"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// Seen is a request observed rather than proxied: read off the wire
// (sniff) or from a recording (GoReplay, pcap import). It went through the
// same decision as a tapped request (route, sampling, user key), and its
// answer is captured into the same RequestEvent, through the same queue,
// privacy rules and size caps.
type Seen struct {
	c     *Capturer
	d     decision
	r     *http.Request
	start time.Time
}

// See decides, as the tap does when a request arrives, whether a request
// seen at start is captured; nil when it is not (unmatched route skipped,
// capture: false, not sampled). r.RemoteAddr ("ip:port" of the client)
// decides whether the user header is believed (trusted proxies). Only the
// request line and headers of r are read; r is kept until Finish, which
// takes its header map (and the answer's) for the event: they are stripped
// in place.
func (c *Capturer) See(r *http.Request, start time.Time) *Seen {
	d := c.decide(r.Method, r.URL.Path, r.Header, c.priv.trusted.peer(r.RemoteAddr))
	d.m.legacyRequests.Inc()
	if !d.capture {
		return nil
	}
	d.captureID = newID(start)
	return &Seen{c: c, d: d, r: r, start: start}
}

// MaxBody is the cap on each captured body: longer bodies are captured
// truncated and flagged.
func (c *Capturer) MaxBody() int64 { return c.cfg.MaxBody }

// Observed is the rest of an observed exchange: the request body and the
// answer, bodies already cut to Capturer.MaxBody.
type Observed struct {
	Body          []byte
	BodyTruncated bool
	Response      *http.Response // status, headers, trailers (values filled in)
	RespBody      []byte
	RespTruncated bool
	End           time.Time // last byte of the answer
	Source        schemas.Source
}

// Finish publishes the exchange without waiting: when the queue is full the
// event is dropped and counted, like a tapped one. It reports whether the
// event was queued.
func (s *Seen) Finish(o Observed) bool {
	it := s.item(o)
	s.d.m.legacySeconds.Observe(o.End.Sub(s.start).Seconds())
	return s.c.submit(it)
}

// FinishWait publishes the exchange, waiting for queue space (imports must
// not lose events).
func (s *Seen) FinishWait(ctx context.Context, o Observed) error {
	it := s.item(o)
	if err := s.c.Enqueue(ctx, it.ev); err != nil {
		return err
	}
	return nil
}

func (s *Seen) item(o Observed) *item {
	resp := o.Response
	// What a bare reverse proxy forwards: the hop-by-hop headers are the
	// connection's, not the answer's (httputil.ReverseProxy removes them
	// from the answer the tap captures).
	removeHopByHop(resp.Header)
	ev := s.c.exchangeEvent(&s.d, s.r, s.start, resp, o.End.Sub(s.start))
	ev.Source = o.Source
	ev.Body, ev.BodyTruncated = o.Body, o.BodyTruncated
	ev.Response.Body, ev.Response.BodyTruncated = o.RespBody, o.RespTruncated
	return &item{ev: ev, owned: true, reqOwned: true, size: int64(len(ev.Body) + len(ev.Response.Body)), m: s.d.m}
}

// exchangeEvent is the one place a captured exchange becomes a
// RequestEvent (tap and sniff): request line and headers of r, the answer's
// status and headers, trailers as "Trailer-<Name>" headers. Bodies are set
// by the caller. The headers are stripped later, by the publisher goroutine.
func (c *Capturer) exchangeEvent(d *decision, r *http.Request, start time.Time, resp *http.Response, latency time.Duration) *schemas.RequestEvent {
	ev := &schemas.RequestEvent{
		V:           schemas.Version,
		ID:          d.captureID,
		Service:     c.cfg.Service,
		Route:       d.route,
		Method:      r.Method,
		Path:        r.URL.Path,
		Query:       r.URL.RawQuery,
		Headers:     r.Header,
		UserKey:     d.id.key,
		TraceParent: r.Header.Get("Traceparent"),
		CapturedAt:  start,
		Source:      schemas.SourceTap,
		Response: schemas.HTTPResponse{
			Status:  resp.StatusCode,
			Headers: resp.Header,
			Latency: latency,
		},
	}
	if len(resp.Trailer) > 0 {
		ev.Response.Headers = resp.Header.Clone()
		for k, v := range resp.Trailer {
			ev.Response.Headers[http.CanonicalHeaderKey("Trailer-"+k)] = v
		}
	}
	return ev
}

// hopHeaders are httputil.ReverseProxy's hop-by-hop headers.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop removes the hop-by-hop headers from h as
// httputil.ReverseProxy does: those named by Connection, then the fixed list
// (canonical already, so deleted from the map directly).
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}
