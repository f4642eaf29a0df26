// Package shadow is the shadow replayer of the pipeline: it consumes captured
// legacy requests from the LEGACY_REQUESTS stream (one durable JetStream
// consumer per service, DurableName(base, service), which several processes
// share, splitting the work; a lagging service never holds up another),
// replays each one against the cube that now owns its route — and, for the
// noise baseline, against a second legacy instance — and publishes the pair as a
// schemas.ShadowResult on SHADOW_RESULTS for the comparator.
//
// Per cube target it bounds concurrency and rate, applies a per-request
// timeout and a circuit breaker (closed / open / half-open) so a failing cube
// is not hammered. Per route it applies the replay policy of the routes file
// (always, idempotent-only, dry-run) and, to imported traffic (the tap samples
// at capture), its sampling. Per target it rewrites
// headers and adds service credentials (a bearer token or an HS256 JWT minted
// for the target); the captured request never carries user credentials, and
// the replayer strips any that slipped through.
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
package shadow
