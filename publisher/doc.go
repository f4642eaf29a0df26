// Package publisher is the capture stage of shadowcube: it puts every legacy
// request, with the answer the legacy service gave, on the LEGACY_REQUESTS
// JetStream stream (subject legacy.req.<service>.<route template>) without
// ever slowing down or failing the legacy service.
//
// Three ways in share one code path (Capturer):
//
//   - Tap: a reverse proxy (net/http/httputil.ReverseProxy) in front of the
//     legacy service. Users get the legacy answer streamed as it comes;
//     request and response bodies are teed up to a size cap into a bounded
//     in-memory queue, and one publisher goroutine sends the events in
//     batches (waking at most once a millisecond under load) with
//     asynchronous JetStream publishes, each acknowledged, timed out after
//     Config.AckTimeout, or counted as dropped. When NATS is down or slow the queue
//     fills and new captures are dropped and counted
//     (shadowcube_tap_dropped_total{reason}); the user path never waits.
//     A capturer made without a connection (NATS down at start) runs
//     detached: it proxies, counts or spills, and ConnectLoop attaches it
//     once NATS answers (shadowcube_tap_capture_up).
//   - Middleware: the same capture inside a Go service (Middleware).
//   - Importer: recorded traffic from JSONL (one schemas.RequestEvent per
//     line) or HAR files, published with a Nats-Msg-Id derived from the
//     content so a re-import is de-duplicated by JetStream (within the
//     stream's duplicate window).
//
// The Capturer follows the stage contract (docs/architecture.md): New
// (no I/O) queues captures from the start, Run publishes them until its
// context ends or Close is called, and Close drains what is queued:
//
//	c, err := publisher.New(cfg, publisher.Deps{Conn: nc, Logger: log, Registerer: reg})
//	go c.Run(ctx) // publishes (and opens the spill file) until Close
//	defer c.Close()
//	http.ListenAndServe(addr, publisher.Middleware(c)(handler))
//
// Every event has a capture id (32 hex digits, time-ordered prefix) that is
// also its Nats-Msg-Id, so a re-publish (spill replay, retried import) is
// de-duplicated by JetStream. Imported records without an id get
// "imp-" + hex(sha256(record))[:32].
//
// Response trailers are captured as response headers named
// "Trailer-<Name>".
//
// Privacy: the raw user id never leaves the process; events carry UserKey,
// "hmac-sha256:" + hex of HMAC-SHA256(secret, user id). The id is believed
// from the user header only when the peer is a trusted proxy (the header is
// removed from other peers' requests), from a bearer JWT only when its
// signature, exp, aud and iss verify, and from a cookie only for the user
// key: a cookie user is never rolled out. The rules of package
// internal/redact decide what else is published: an allowlist of headers,
// token-like query parameters and form fields removed or HMAC'd, configured
// JSON body paths removed or HMAC'd in every JSON value of a body (a body
// that cannot be parsed while paths are set is dropped and counted). The
// shadow stage applies the same rules to the cubes' answers.
//
// Sampling: a route's sample share (routes file) is applied per user, so a
// user is either always or never captured on that route:
// captured ⇔ uint64(HMAC[8:16]) mod 10000 < sample×10000. Requests without a
// user id are sampled at random at the same share.
//
// Rollout flags live in the JetStream KV bucket schemas.KVBucket
// ("shadowcube"), one key per service:
//
//	rollout.<service>   (service escaped with schemas.EscapeToken)
//
// whose value is a JSON Flag: {"v":"1.0","service":"saju","percent":10,
// "ramp":{"from":10,"to":50,"step":10,"every":"1h0m0s","start":"..."},
// "updated_at":"..."}. A user is served by the cube when
// uint64(HMAC[0:8]) mod 100 < percent (the seed's rule: stable per user, and
// a user moved at 10% stays moved at 20%). A ramp raises (or lowers) the
// percent by step at its start and after each further interval until it
// reaches to, computed from the clock, so no process has to stay running.
// Only users with a verified identity are rolled out. Taps watch their key
// and apply a change (including an instant rollback to 0) within a second. For a user served by the cube the roles swap: the cube
// answers the user, and the request is sent to the legacy service in the
// background (bounded, subject to the route's replay policy) so the legacy
// answer is what gets captured. When the cube gives no answer at all, the
// user is answered by the legacy service instead (the request body, kept up
// to the cap, is sent again), so a dead cube never fails a user.
package publisher
