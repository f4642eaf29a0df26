package main

import (
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newTapCmd() *cobra.Command {
	var te wiring.TapEnv
	cmd := &cobra.Command{
		Use:   "tap",
		Short: "Reverse proxy in front of the legacy service that captures traffic into JetStream",
		Long: `tap is a reverse proxy in front of a legacy HTTP service. Users always get the
legacy answer, unchanged and streamed as it comes; each request and its answer
(bodies up to the cap, longer ones truncated and flagged) go through a bounded
in-memory queue to the LEGACY_REQUESTS stream, subject
legacy.req.<service>.<route template>, with Nats-Msg-Id = the capture id. When
NATS is down or slow the queue fills and new captures are dropped and counted
(shadowcube_tap_dropped_total{reason}); the user path never waits or fails.
A tap started while NATS is unreachable starts anyway: it proxies every
request, drops (or spills) and counts captures, keeps connecting in the
background (shadowcube_tap_capture_up is 0 meanwhile, /readyz stays ready)
and captures once NATS answers.

Privacy: the raw user id becomes user_key = hmac-sha256 of it. Only allowed
headers are published (a safe default list, e.g. Content-Type, Traceparent,
X-Truth-Label, plus SHADOWCUBE_TAP_ALLOW_HEADERS); token-like query parameters
and form fields are removed or HMAC'd, and configured JSON body paths in every
JSON value of a body. A client's X-Shadow-Request header is removed.

Rollout: the tap watches the KV key rollout.<service> (see 'shadowcube flags').
A user whose hash(user key) mod 100 < percent is served by the cube instead;
the request is then sent to the legacy service in the background (bounded,
following the route's replay policy) and the legacy answer is captured.
When the cube gives no answer at all (down, reset, timeout before headers),
the user is answered by the legacy service instead
(shadowcube_tap_cube_fallback_total). Changes take effect within a second,
without restart.

Metrics on SHADOWCUBE_METRICS_ADDR: shadowcube_tap_requests_total{route,target},
shadowcube_tap_captured_total{route}, shadowcube_tap_captured_bytes_total{route},
shadowcube_tap_dropped_total{reason}, shadowcube_tap_published_total,
shadowcube_tap_queue_depth, shadowcube_tap_publish_seconds, shadowcube_tap_cube_fallback_total,
shadowcube_tap_upstream_seconds{route,target}.
` + wiring.EnvHelp("Environment", &te) + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := load(cmd, &te); err != nil {
				return err
			}
			if _, _, err := te.Check(); err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "tap", true)
			if err != nil {
				return err
			}
			defer p.Close()
			return wiring.RunTap(ctx, p, te)
		},
	}
	wiring.BindFlags(cmd.Flags(), &te)
	return cmd
}
