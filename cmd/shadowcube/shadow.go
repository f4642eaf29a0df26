package main

import (
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newShadowCmd() *cobra.Command {
	var e wiring.ShadowEnv
	cmd := &cobra.Command{
		Use:   "shadow",
		Short: "Replay captured legacy requests against the cubes and publish the answer pairs",
		Long: `shadow consumes captured legacy requests from the LEGACY_REQUESTS stream with
durable JetStream consumers, one per service of the routes file, named
<durable>-<service> (every process started with the same --durable takes a share
of the work; a service whose cube lags never holds up another), replays each
one against the cube of its service — and against secondary_url, a second
legacy instance, when set (noise baseline) — and publishes the pair (legacy answer, cube answer or error, secondary answer,
freshness, timings) to SHADOW_RESULTS on shadow.result.<service>.<route> for
'shadowcube compare'. A request is acknowledged only after its result is stored.

The routes file (--routes; every field is described in docs/routes.md) lists
the services: cube_url, secondary_url, legacy_url (asked again when a read's
cube answer differs from the captured one: LegacyRecheck), sync_target +
freshness_wait (freshness barrier: a request captured at time T waits until
the cube's sync watermark, KV shadowcube/sync-watermark.<target>, has reached
T, at most freshness_wait, else it is replayed and tagged stale), timeout,
concurrency, rate_per_second, headers (set on every replay, "" removes one),
credentials ({kind: bearer, token_env: VAR} or {kind: jwt-hs256, secret_env:
VAR, issuer, audience, subject, ttl}: an HS256 JWT minted per target), and per
route: methods, replay, classify, operation and sample (0..1; applied here
only to imported traffic, decided by a hash of the request id: the tap already
sampled what it captured). User credentials (Authorization, Cookie, API keys)
are never forwarded; give the shadow principal read-only or dry-run scope on
the cube.

Replay policies (replay:): reads (the default when replay: is omitted) replays
reads only: GET, HEAD, OPTIONS, or what the route's classify: finds
side-effect free (classify: {graphql: true}: the parsed GraphQL operation type,
query replays, mutation and subscription do not; read_when / write_when: a
JSONPath or regular expression on the body); a client's Idempotency-Key does
not make a write a read. idempotent-only is the older name of reads. always
replays writes too; dry-run replays everything with X-Shadow-Request: 1; never
replays nothing. A request legacy answered 401 or 403 is never replayed. Every
request not replayed is counted (shadowcube_shadow_skipped_total{reason}) and,
unless it was sampled out, stored as a result with skipped set.

Each cube target has a circuit breaker: after --breaker-failures consecutive
failures (transport error, timeout, 502/503/504) it opens for --breaker-open;
then one probe is let through (half-open) and its success closes it. While it
is open the service's requests are not taken: they wait in JetStream. A
connection refused, reset or 502/503/504 is recorded as the cube's answer only
from a cube that answered since its breaker last opened, on the request's
SHADOWCUBE_SHADOW_CUBE_ERROR_ATTEMPTS-th delivery; a timeout only from such a
healthy cube; anything else is replayed again later, so a cube started after
shadow loses no pair. State: shadowcube_shadow_breaker_state{target} (0
closed, 1 half-open, 2 open).

Undecodable messages are terminated and copied to dlq.shadow with the reason.

Metrics (shadowcube_shadow_*): replays_total{service,route,outcome},
skipped_total{service,route,reason}, legacy_rechecks_total{service,route,outcome},
replay_seconds{service,route,side=legacy|cube|secondary}, breaker_state{target},
breaker_transitions_total, stale_cube_total, freshness_wait_seconds,
freshness_waiting, in_flight, publish_failures_total.

Privacy: every cube and secondary answer is sanitised with the tap's rules before it
is published (header allowlist, query/form/JSON redaction), read from the same
variables (below).` + wiring.EnvHelp("Environment", &e) + `
  The variables the routes file names in credentials (token_env, secret_env).` + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := load(cmd, &e); err != nil {
				return err
			}
			cfg, err := e.Config()
			if err != nil {
				return err
			}
			ctx, p, err := setup(cmd, "shadow", true)
			if err != nil {
				return err
			}
			defer p.Close()
			conn, err := p.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			r, err := wiring.NewShadow(p, conn, cfg)
			if err != nil {
				return err
			}
			defer r.Close()
			if err := r.Run(ctx); err != nil {
				return err
			}
			p.Log.Info("shadow replayer stopped")
			return nil
		},
	}
	wiring.BindFlags(cmd.Flags(), &e)
	return cmd
}
