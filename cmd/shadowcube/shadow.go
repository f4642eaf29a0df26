package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/shadow"
)

// shadowEnv is the configuration of `shadowcube shadow`; flags override it.
type shadowEnv struct {
	// The tap's privacy rules, applied to the cubes' answers.
	redact.Env

	RoutesFile      string        `envconfig:"ROUTES_FILE"`
	Durable         string        `envconfig:"SHADOW_DURABLE" default:"shadow"`
	MaxInFlight     int           `envconfig:"SHADOW_MAX_IN_FLIGHT" min:"1" default:"256"`
	MaxAckPending   int           `envconfig:"SHADOW_MAX_ACK_PENDING" min:"0" default:"0"`
	Concurrency     int           `envconfig:"SHADOW_CONCURRENCY" min:"1" default:"16"`
	Timeout         time.Duration `envconfig:"SHADOW_TIMEOUT" min:"1ms" default:"5s"`
	FreshnessWait   time.Duration `envconfig:"SHADOW_FRESHNESS_WAIT" min:"1ms" default:"10s"`
	BreakerFailures int           `envconfig:"SHADOW_BREAKER_FAILURES" min:"1" default:"5"`
	BreakerOpen     time.Duration `envconfig:"SHADOW_BREAKER_OPEN" min:"1ms" default:"5s"`
	BreakerProbes   int           `envconfig:"SHADOW_BREAKER_PROBES" min:"1" default:"1"`
	MaxBodyBytes    int64         `envconfig:"SHADOW_MAX_BODY_BYTES" min:"1" default:"1048576"`
	AckWait         time.Duration `envconfig:"SHADOW_ACK_WAIT" min:"0s" default:"0"`
	ResultsMaxAge   time.Duration `envconfig:"SHADOW_RESULTS_MAX_AGE" min:"0s" default:"0"`
	ResultsMaxBytes int64         `envconfig:"SHADOW_RESULTS_MAX_BYTES" min:"0" default:"0"`
	ResultsReplicas int           `envconfig:"SHADOW_RESULTS_REPLICAS" min:"1" max:"5" default:"1"`
	ResultsStorage  string        `envconfig:"SHADOW_RESULTS_STORAGE" default:"file"`
	// CubeErrorAttempts: on which delivery a healthy cube's transport error
	// or 502/503/504 is recorded (earlier ones are replayed again).
	CubeErrorAttempts int `envconfig:"SHADOW_CUBE_ERROR_ATTEMPTS" default:"3" min:"1" max:"100"`
}

func newShadowCmd() *cobra.Command {
	var (
		routesFile, durable             string
		maxInFlight, conc, brkFail      int
		timeout, freshWait, breakerOpen time.Duration
		since, until, pace              string
		skew                            time.Duration
		loop, fused                     bool
	)
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

Fused compare (--compare): the replayer compares each pair in process and
stores the verdict in the mismatch store itself (as 'shadowcube compare' would:
same routes file rules, the compare command's SHADOWCUBE_STORE_DATABASE_URL,
SHADOWCUBE_COMPARE_* settings and accepted file), still publishing every
result to SHADOW_RESULTS (asynchronously) for audit and other readers. A
request is acknowledged once its verdict's transaction committed. Separate
'shadow' and 'compare' processes keep working as before.

Window replay (--since): replays the requests captured in [--since, --until]
(RFC 3339 times; --until defaults to now) once, or again and again with
--loop (load tests, until stopped), then exits after printing a summary
(replayed, skipped by policy, cube errors, duration, achieved rate against
the rate asked). It reads LEGACY_REQUESTS with its own ephemeral ordered
consumer from a start-time lookup (--since minus --skew), so the live
replayers' durables are untouched, and stops at the first message stored
after --until plus --skew, or at the last one stored when it started.
--skew (1m) is how long after its capture a request may have been stored;
raise it for imported traffic (stored long after its capture). --pace
recorded keeps the captured gaps between requests, 10x divides them by 10,
max replays as fast as the cube and the service's concurrency and
rate_per_second allow. A user's requests are replayed one at a time in
capture order. Requests the policy skips are counted, not stored; results
carry the Nats-Msg-Id <request id>@<replay time>, so a window's pairs are new
pairs next to the live ones.

Flags (each overrides its environment variable):
  --routes FILE            SHADOWCUBE_ROUTES_FILE          routes file (required)
  --durable NAME           SHADOWCUBE_SHADOW_DURABLE       base name of the durable consumers (shadow)
  --max-in-flight N        SHADOWCUBE_SHADOW_MAX_IN_FLIGHT requests of one service handled at once by
                                                           this process (256)
  --concurrency N          SHADOWCUBE_SHADOW_CONCURRENCY   replays in flight per target when the
                                                           service sets no concurrency (16)
  --timeout D              SHADOWCUBE_SHADOW_TIMEOUT       per-request timeout when the service sets none (5s)
  --freshness-wait D       SHADOWCUBE_SHADOW_FRESHNESS_WAIT longest watermark wait when the service
                                                           sets no freshness_wait (10s)
  --breaker-failures N     SHADOWCUBE_SHADOW_BREAKER_FAILURES consecutive failures that open a breaker (5)
  --breaker-open D         SHADOWCUBE_SHADOW_BREAKER_OPEN  how long a breaker stays open (5s)
  --compare                compare and store in this process (fused; see above)
  --since T, --until T     replay the window of capture times [T, T] and exit (RFC 3339)
  --pace P                 window pace: recorded (default), Nx (e.g. 10x) or max
  --loop                   repeat the window until stopped
  --skew D                 how late after capture a request may be stored (1m)

Environment only:
  SHADOWCUBE_SHADOW_BREAKER_PROBES   requests let through while half-open (1)
  SHADOWCUBE_SHADOW_MAX_ACK_PENDING  unacknowledged messages of one service over all
                                     processes (0 = 4 × max-in-flight)
  SHADOWCUBE_SHADOW_ACK_WAIT         consumer ack wait (0 = longest freshness wait +
                                     2 × longest timeout + 30s)
  SHADOWCUBE_SHADOW_MAX_BODY_BYTES   cap on a replayed answer's body (1048576)
  SHADOWCUBE_SHADOW_CUBE_ERROR_ATTEMPTS delivery on which a healthy cube's transport
                                     error or 502/503/504 is recorded (3, 1..100)
  SHADOWCUBE_SHADOW_RESULTS_MAX_AGE, SHADOWCUBE_SHADOW_RESULTS_MAX_BYTES,
  SHADOWCUBE_SHADOW_RESULTS_REPLICAS, SHADOWCUBE_SHADOW_RESULTS_STORAGE
                                     limits of the SHADOW_RESULTS stream (unlimited, 1
                                     replica, file storage)
  The variables the routes file names in credentials (token_env, secret_env).

Metrics (shadowcube_shadow_*): replays_total{service,route,outcome},
skipped_total{service,route,reason}, legacy_rechecks_total{service,route,outcome},
replay_seconds{service,route,side=legacy|cube|secondary}, breaker_state{target},
breaker_transitions_total, stale_cube_total, freshness_wait_seconds,
freshness_waiting, in_flight, publish_failures_total.

Privacy: every cube and secondary answer is sanitised with the tap's rules before it
is published (header allowlist, query/form/JSON redaction), read from the same
variables:` + redact.EnvHelp + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var env shadowEnv
			if err := process.Load(&env); err != nil {
				return err
			}
			if err := storageValue("SHADOWCUBE_SHADOW_RESULTS_STORAGE", env.ResultsStorage); err != nil {
				return err
			}
			f := cmd.Flags()
			if f.Changed("routes") {
				env.RoutesFile = routesFile
			}
			if f.Changed("durable") {
				env.Durable = durable
			}
			if f.Changed("max-in-flight") {
				env.MaxInFlight = maxInFlight
			}
			if f.Changed("concurrency") {
				env.Concurrency = conc
			}
			if f.Changed("timeout") {
				env.Timeout = timeout
			}
			if f.Changed("freshness-wait") {
				env.FreshnessWait = freshWait
			}
			if f.Changed("breaker-failures") {
				env.BreakerFailures = brkFail
			}
			if f.Changed("breaker-open") {
				env.BreakerOpen = breakerOpen
			}
			for _, fl := range []struct {
				name string
				bad  bool
				v    any
			}{
				{"max-in-flight", maxInFlight < 0, maxInFlight},
				{"concurrency", conc < 0, conc},
				{"breaker-failures", brkFail < 0, brkFail},
				{"timeout", timeout < 0, timeout},
				{"freshness-wait", freshWait < 0, freshWait},
				{"breaker-open", breakerOpen < 0, breakerOpen},
			} {
				if f.Changed(fl.name) && fl.bad {
					return usageError{fmt.Errorf("--%s %v: must be at least 0 (0 = default)", fl.name, fl.v)}
				}
			}
			if env.RoutesFile == "" {
				return usageError{fmt.Errorf("shadow: no routes file: pass --routes FILE or set SHADOWCUBE_ROUTES_FILE")}
			}
			win, err := windowFlags(f.Changed, since, until, pace, skew, loop)
			if err != nil {
				return usageError{err}
			}
			rf, err := routes.Load(env.RoutesFile)
			if err != nil {
				return err
			}
			ctx, e, err := setup(cmd, "shadow", true)
			if err != nil {
				return err
			}
			defer e.Close()
			conn, err := e.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			rules, err := redact.New(env.Env.Config())
			if err != nil {
				return usageError{err}
			}
			var sink *comparator.Fused
			if fused {
				if sink, err = openFused(ctx, e, env.RoutesFile, rf, conn.JS); err != nil {
					return err
				}
				defer sink.Close() // runs after the replayer's Close (deferred later)
			}
			r, err := shadow.New(shadow.Config{
				Sink:              sinkOf(sink),
				Redact:            rules,
				Routes:            rf,
				Durable:           env.Durable,
				MaxInFlight:       env.MaxInFlight,
				MaxAckPending:     env.MaxAckPending,
				Timeout:           env.Timeout,
				Concurrency:       env.Concurrency,
				FreshnessWait:     env.FreshnessWait,
				Breaker:           shadow.BreakerConfig{Failures: env.BreakerFailures, OpenFor: env.BreakerOpen, Probes: env.BreakerProbes},
				MaxBodyBytes:      env.MaxBodyBytes,
				AckWait:           env.AckWait,
				CubeErrorAttempts: env.CubeErrorAttempts,
				Results: natsx.StreamSettings{
					MaxAge: env.ResultsMaxAge, MaxBytes: env.ResultsMaxBytes,
					Replicas: env.ResultsReplicas, Storage: env.ResultsStorage,
				},
				LookupEnv: os.LookupEnv,
			}, shadow.Deps{JetStream: conn.JS, Logger: e.Log, Registerer: e.Reg})
			if err != nil {
				return err
			}
			defer r.Close()
			if win != nil {
				sum, err := r.ReplayWindow(ctx, *win, func(s shadow.Summary) {
					if win.Loop {
						fmt.Fprintln(e.Stdout, s)
					}
				})
				fmt.Fprintln(e.Stdout, sum)
				return err
			}
			if err := r.Run(ctx); err != nil {
				return err
			}
			e.Log.Info("shadow replayer stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&routesFile, "routes", "", "routes file (SHADOWCUBE_ROUTES_FILE)")
	f.StringVar(&durable, "durable", shadow.DefaultDurable, "base name of the per-service durable consumers shared by replayers (SHADOWCUBE_SHADOW_DURABLE)")
	f.IntVar(&maxInFlight, "max-in-flight", 256, "requests of one service handled at once by this process (SHADOWCUBE_SHADOW_MAX_IN_FLIGHT)")
	f.IntVar(&conc, "concurrency", 16, "default replays in flight per target (SHADOWCUBE_SHADOW_CONCURRENCY)")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "default per-request timeout (SHADOWCUBE_SHADOW_TIMEOUT)")
	f.DurationVar(&freshWait, "freshness-wait", 10*time.Second, "default longest wait for a cube's sync watermark (SHADOWCUBE_SHADOW_FRESHNESS_WAIT)")
	f.IntVar(&brkFail, "breaker-failures", 5, "consecutive failures that open a target's breaker (SHADOWCUBE_SHADOW_BREAKER_FAILURES)")
	f.DurationVar(&breakerOpen, "breaker-open", 5*time.Second, "how long an open breaker rejects replays (SHADOWCUBE_SHADOW_BREAKER_OPEN)")
	f.BoolVar(&fused, "compare", false, "compare and store the pairs in this process (fused replay + compare; the compare command's environment)")
	f.StringVar(&since, "since", "", "replay the requests captured from this time (RFC 3339) and exit")
	f.StringVar(&until, "until", "", "with --since: up to this capture time (RFC 3339; default now)")
	f.StringVar(&pace, "pace", "recorded", "with --since: recorded, Nx (e.g. 10x) or max")
	f.BoolVar(&loop, "loop", false, "with --since: repeat the window until stopped")
	f.DurationVar(&skew, "skew", time.Minute, "with --since: how long after capture a request may have been stored")
	return cmd
}

// windowFlags reads the window replay flags; nil without --since.
func windowFlags(changed func(string) bool, since, until, pace string, skew time.Duration, loop bool) (*shadow.Window, error) {
	if !changed("since") {
		for _, name := range []string{"until", "pace", "loop", "skew"} {
			if changed(name) {
				return nil, fmt.Errorf("shadow: --%s needs --since (a window replay)", name)
			}
		}
		return nil, nil
	}
	w := &shadow.Window{Loop: loop, Skew: skew}
	var err error
	if w.Since, err = time.Parse(time.RFC3339Nano, since); err != nil {
		return nil, fmt.Errorf("shadow: --since %q: want an RFC 3339 time such as 2026-11-29T14:00:00Z", since)
	}
	if until != "" && until != "now" {
		if w.Until, err = time.Parse(time.RFC3339Nano, until); err != nil {
			return nil, fmt.Errorf("shadow: --until %q: want an RFC 3339 time such as 2026-11-29T15:00:00Z", until)
		}
		if w.Until.Before(w.Since) {
			return nil, fmt.Errorf("shadow: --until %s is before --since %s", until, since)
		}
	}
	if w.Pace, err = shadow.ParsePace(pace); err != nil {
		return nil, fmt.Errorf("shadow: --%w", err)
	}
	if skew <= 0 {
		return nil, fmt.Errorf("shadow: --skew %v: must be positive", skew)
	}
	return w, nil
}

// sinkOf is the replayer's Sink: nil (publish only) without --compare.
func sinkOf(f *comparator.Fused) shadow.Sink {
	if f == nil {
		return nil
	}
	return f
}

// openFused builds the in-process comparator of `shadow --compare` from the
// compare command's environment (SHADOWCUBE_STORE_DATABASE_URL,
// SHADOWCUBE_COMPARE_*) and the routes file's compare rules.
func openFused(ctx context.Context, e *Env, routesFile string, rf *routes.File, js jetstream.JetStream) (*comparator.Fused, error) {
	var env compareEnv
	if err := process.Load(&env); err != nil {
		return nil, err
	}
	if err := env.validate(); err != nil {
		return nil, usageError{fmt.Errorf("shadow --compare: %w", err)}
	}
	if env.StoreURL == "" {
		return nil, usageError{fmt.Errorf("shadow --compare: SHADOWCUBE_STORE_DATABASE_URL is not set: the mismatch store's PostgreSQL URL")}
	}
	var acc *comparator.Accepted
	if env.AcceptedFile != "" {
		var err error
		if acc, err = comparator.LoadAccepted(env.AcceptedFile); err != nil {
			return nil, err
		}
	}
	cmpr, err := comparator.New(comparator.Config{
		Routes: routeRules(rf), Noise: env.noise(), AI: env.ai(), Accepted: acc, RepeatCache: env.RepeatCache, RepeatWindow: env.RepeatWindow,
		Saju: comparator.SajuConfig{Longitude: env.Longitude},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", routesFile, err)
	}
	store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: env.StoreURL, Schema: env.Schema})
	if err != nil {
		return nil, err
	}
	e.OnClose(func() { store.Close() })
	if err := store.Seed(ctx, cmpr); err != nil {
		return nil, err
	}
	return comparator.NewFused(comparator.FusedConfig{Batch: env.Batch},
		comparator.Deps{JetStream: js, Comparator: cmpr, Store: store, Logger: e.Base.With("stage", "compare"), Registerer: e.Reg})
}
