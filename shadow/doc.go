// Package shadow is the shadow replayer of the pipeline: it consumes captured
// legacy requests from the LEGACY_REQUESTS stream (one durable JetStream
// consumer per service, DurableName(base, service), which several processes
// share, splitting the work; a lagging service never holds up another),
// replays each one against the cube that now owns its route — and, for the
// noise baseline, against a second legacy instance — and publishes the pair as a
// schemas.ShadowResult on SHADOW_RESULTS for the comparator.
//
// Per cube target it bounds concurrency and rate (golang.org/x/time/rate),
// applies a per-request timeout and a circuit breaker (sony/gobreaker:
// closed / open / half-open). While a cube's breaker is open the service's
// requests are not taken: they wait in JetStream (the consume loop pauses,
// requests already taken are nak'ed with the breaker's delay) and resume
// when a probe closes it. A transport error or 502/503/504 is recorded as
// the cube's answer only from a cube that answered since its breaker last
// opened, on the request's CubeErrorAttempts-th delivery; a timeout only
// from such a healthy cube; so a cube started after shadow loses no pair.
//
// Per route it applies the replay policy of the routes file (docs/routes.md):
// reads (the default) replays reads only, judged by method or by the route's
// classifier (GraphQL operation type, a JSONPath or regex on the body);
// always and dry-run replay writes too; never replays nothing. A request
// legacy answered 401/403 is never replayed. A request not replayed is
// counted (shadowcube_shadow_skipped_total) and, unless sampled out, stored
// as a result with Skipped set. Each result carries the route's operation
// key. To imported traffic (the tap samples at capture) it applies the
// route's sampling. Per target it rewrites headers and adds service
// credentials (a bearer token or an HS256 JWT minted for the target by
// golang-jwt); the captured request never carries user credentials, and the
// replayer strips any that slipped through.
//
// Recheck: when a read's cube answer differs from the captured legacy answer
// and the service has a legacy_url, legacy is asked again at replay time and
// its answer stored as ShadowResult.LegacyRecheck (equal to the cube's: the
// data moved on after capture).
//
// Freshness barrier: a request captured at time T is replayed to a cube fed by
// the sync stage only once the cube's sync watermark (KV
// schemas.WatermarkKey(target)) has reached T, or a bounded wait has expired,
// in which case the result is tagged stale. One KV watcher serves every
// in-flight request.
//
// Delivery: a request message is acknowledged only after JetStream stored its
// result (Nats-Msg-Id = request id, so a redelivery is de-duplicated); a
// failed publish naks with a delay; an undecodable message is terminated and
// copied to dlq.shadow.
//
// Fused compare: with Config.Sink set (comparator.Fused, `shadow
// --compare`), each result goes to the sink, which compares and stores it
// in process and still publishes it to SHADOW_RESULTS; the request is
// acknowledged when the sink reports it stored.
//
// Window replay: ReplayWindow replays the requests captured in a time
// window (`shadow --since --until --pace --loop`) from a JetStream
// start-time lookup on its own ordered consumer, at the recorded pace, a
// multiple of it or as fast as the limits allow, and returns a Summary.
package shadow
