package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
	"github.com/heal7/shadowcube/schemas"
)

const compareHelp = `compare reads answer pairs from the SHADOW_RESULTS stream with a durable
JetStream consumer (processes started with the same durable share the work),
judges each pair and stores the verdict in PostgreSQL (schema
shadowcube_compare, migrated at start-up); a message is acknowledged only after
the transaction holding its verdict committed.

Per route, the routes file's compare section chooses the comparison:
  kind: json   rule engine on go-cmp: status, the listed headers and the JSON
               bodies, with ignore (JSONPath-like: $.request_id, $.items[*].ts,
               $..trace), tolerance ({$.score: 0.001}) and unordered arrays;
               diffs are changed / missing / extra / type / order.
  kind: saju   the same plus saju knowledge: Hanja and Hangul forms equal,
               id/request_id/generated_at ignored, interpretation compared by
               presence only; each mismatch's pillars are recomputed from the
               birth data under every combination of the conventions engines
               differ in (zi-hour rule, local mean time, term-table time basis,
               Korea's clock history, lunar calendar) and tagged with the
               convention(s) whose change turns one answer into the other:
               zi-hour, local-mean-time, solar-term-boundary, clock-history,
               lunar-input (several when several do); a luck start age alone
               is table-convention; what no convention explains is unexplained.
  kind: ai     label agreement and confidence difference; with a truth label
               (request header truth_header, default X-Truth-Label) accuracy of
               legacy and cube with Wilson 95% intervals and a one-sided
               two-proportion z-test: flagged when the cube is lower by more
               than the allowed drop with significance.
Other cause tags: status (status or header differs), cube-error (no cube
answer: error or timeout), ai-label, body-truncated (a body was cut at the
capture cap), stale-cube (the freshness wait expired, so
the cube's data may lag) and unexplained.
A mismatch whose legacy answer asked again at replay time (shadow's recheck)
equals the cube's answer under the same rules is moved-on: the data changed
after capture; counted, not a failure. Requests shadow skipped by policy are
stored and counted by reason, never compared.
Differences are suppressed as noise per route (and operation key, when the
route defines one) and field path by Diffy's rule, learned from the secondary
legacy answer when one is configured, else from repeated identical requests
whose captures straddle no applied legacy write (replayed at the same sync
watermark, or captured within the repeat window): a data change between two
captures is not noise. Reported only if cube-diff-rate > noise-rate, their
difference over their sum > the relative threshold and the difference
> the absolute threshold. Mismatches are grouped by signature (service:route
[op=operation]:differing paths:causes); signatures listed in the accepted file
are counted but do not fail.

Accepted-signatures file (versioned YAML):
  version: 1
  accepted:
    - signature: "saju:/api/saju/chart:$.day_master,$.elements,$.pillars.day,$.ten_gods:zi-hour"
      reason: why this is expected
    - route: /api/saju/chart          # or every signature of a route with a cause
      cause: solar-term-boundary
      reason: why this is expected

Metrics (shadowcube_compare_*): compared_total{service,route,verdict} (rate =
compared/s), match_ratio{service,route}, mismatches_total{service,route,cause},
signature_mismatches_total{signature,accepted}, noise_suppressed_total,
noise_suppressed_diffs_total, replay_latency_seconds{service,route,side=legacy|cube},
cube_errors_total{service,route,kind=timeout|error|5xx}, stale_cube_total,
accepted_total, dead_letters_total, ai_accuracy_ratio{side}, ai_rollback_flag.

Undecodable messages are terminated and copied to dlq.compare.

'shadowcube compare summary' prints the mismatch summary from the store;
'shadowcube compare show <request-id>' the verdict, diffs and causes of one request.`

func newCompareCmd() *cobra.Command {
	var e wiring.CompareEnv
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Compare legacy and cube answers (rules, saju, AI, noise) and store the verdicts",
		Long:  compareHelp + wiring.EnvHelp("Environment", &e) + commonEnvHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := load(cmd, &e); err != nil {
				return err
			}
			if err := e.Check(); err != nil {
				return err
			}
			cmpr, err := e.Comparator()
			if err != nil {
				return err
			}
			ctx, p, err := setup(cmd, "compare", true)
			if err != nil {
				return err
			}
			defer p.Close()
			conn, err := p.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			cons, _, err := wiring.NewCompare(ctx, p, conn, &e, cmpr)
			if err != nil {
				return err
			}
			defer cons.Close()
			p.Log.Info("comparing shadow results", "durable", e.Durable)
			return cons.Run(ctx)
		},
	}
	wiring.BindFlags(cmd.Flags(), &e)
	cmd.AddCommand(newCompareSummaryCmd(), newCompareShowCmd())
	return cmd
}

func newCompareShowCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "show <request-id>",
		Short: "Print the stored verdict, diffs and causes of one request (exit 1 when not found)",
		Long: `show looks a request id up in the mismatch store (the capture id; with
SHADOWCUBE_TAP_ECHO_ID the tap returns it in a response header) and prints,
for each replay of it: method, path and operation key as captured (redacted),
the verdict, severity, causes, signature and every difference. Exit status 1
when the store holds no pair with that id.

Flags:
  --format F       text (default) or json

Environment:
  SHADOWCUBE_STORE_DATABASE_URL        PostgreSQL of the mismatch store (required)
  SHADOWCUBE_COMPARE_SCHEMA            schema of the store (shadowcube_compare)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var env wiring.CompareEnv
			if err := wiring.Load(&env, nil); err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("compare show: --format %q: want text or json", format)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			store, err := env.OpenStore(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			pairs, err := store.Pairs(ctx, args[0])
			if err != nil {
				return err
			}
			if len(pairs) == 0 {
				return &exitError{code: 1, err: fmt.Errorf("compare show: request %q: no stored verdict (not compared yet, or not captured)", args[0])}
			}
			w := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(pairs)
			}
			for i, p := range pairs {
				if i > 0 {
					fmt.Fprintln(w)
				}
				fmt.Fprintf(w, "request    %s\nservice    %s\nroute      %s\n", p.RequestID, p.Service, p.Route)
				fmt.Fprintf(w, "request    %s %s\n", p.Method, p.Path)
				if p.Operation != "" {
					fmt.Fprintf(w, "operation  %s\n", p.Operation)
				}
				fmt.Fprintf(w, "verdict    %s (severity %s", p.Verdict, p.Severity)
				if p.Accepted {
					fmt.Fprint(w, ", accepted")
				}
				fmt.Fprintln(w, ")")
				if p.Skipped != "" {
					fmt.Fprintf(w, "skipped    %s\n", p.Skipped)
				}
				if p.CubeError != "" {
					fmt.Fprintf(w, "cube error %s\n", p.CubeError)
				}
				if len(p.Causes) > 0 {
					fmt.Fprintf(w, "causes     %s\n", strings.Join(p.Causes, ", "))
				}
				if p.Signature != "" {
					fmt.Fprintf(w, "signature  %s\n", p.Signature)
				}
				fmt.Fprintf(w, "replayed   %s, compared %s\n", p.ReplayedAt.UTC().Format(time.RFC3339Nano), p.ComparedAt.UTC().Format(time.RFC3339Nano))
				for _, set := range []struct {
					name string
					raw  json.RawMessage
				}{{"diff", p.Diffs}, {"noise", p.NoiseDiffs}} {
					var ds []schemas.Diff
					if err := json.Unmarshal(set.raw, &ds); err != nil {
						return fmt.Errorf("compare show: stored %ss of %s: %w", set.name, p.RequestID, err)
					}
					for _, d := range ds {
						fmt.Fprintf(w, "%-10s %s %s: legacy %s, cube %s\n", set.name, d.Path, d.Kind, orDash(d.Legacy), orDash(d.Cube))
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}

func orDash(r schemas.RawJSON) string {
	if len(r) == 0 {
		return "-"
	}
	return string(r)
}

func newCompareSummaryCmd() *cobra.Command {
	var (
		limit  int
		format string
	)
	cmd := &cobra.Command{
		Use:   "summary",
		Short: "Print the mismatch summary (by route, cause, signature, noise path, AI accuracy) from the store",
		Long: `summary reads the mismatch store and prints: verdicts and match rate per route
(with mean legacy and cube latency, cube errors and stale-cube pairs), the
share of each cause among a route's mismatches, the most frequent signatures
(accepted or not), each field path's cube-diff and noise rates with its noise
verdict, and for AI routes label agreement, accuracy with Wilson 95% intervals,
the two-proportion test and the rollback rule.

Flags:
  --limit N        signatures listed (20)
  --format F       text (default) or json

Environment:
  SHADOWCUBE_STORE_DATABASE_URL        PostgreSQL of the mismatch store (required)
  SHADOWCUBE_COMPARE_SCHEMA            schema of the store (shadowcube_compare)
  SHADOWCUBE_COMPARE_NOISE_MIN_RELATIVE, SHADOWCUBE_COMPARE_NOISE_MIN_ABSOLUTE,
  SHADOWCUBE_COMPARE_NOISE_DISABLED    noise rule (see 'shadowcube compare --help')
  SHADOWCUBE_COMPARE_AI_MAX_DROP, SHADOWCUBE_COMPARE_AI_ALPHA,
  SHADOWCUBE_COMPARE_AI_MIN_SAMPLES    AI rollback rule (see 'shadowcube compare --help')`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var env wiring.CompareEnv
			if err := wiring.Load(&env, nil); err != nil {
				return err
			}
			if limit < 1 {
				return usageError{fmt.Errorf("compare summary: --limit %d: must be at least 1", limit)}
			}
			if err := env.Check(); err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("compare summary: --format %q: want text or json", format)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			store, err := env.OpenStore(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			sum, err := store.Summary(ctx, limit, env.AI(), env.Noise())
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			return sum.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "signatures listed")
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}
