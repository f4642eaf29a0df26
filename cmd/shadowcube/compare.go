package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/schemas"
)

// compareEnv is the configuration of `shadowcube compare`; flags override it.
type compareEnv struct {
	RoutesFile   string        `envconfig:"ROUTES_FILE"`
	StoreURL     string        `envconfig:"STORE_DATABASE_URL"`
	Schema       string        `envconfig:"COMPARE_SCHEMA" default:"shadowcube_compare"`
	Durable      string        `envconfig:"COMPARE_DURABLE" default:"comparator"`
	Batch        int           `envconfig:"COMPARE_BATCH" default:"256" min:"1"`
	AckWait      time.Duration `envconfig:"COMPARE_ACK_WAIT" min:"1ms" default:"60s"`
	AcceptedFile string        `envconfig:"COMPARE_ACCEPTED_FILE"`
	NoiseOff     bool          `envconfig:"COMPARE_NOISE_DISABLED"`
	NoiseRel     float64       `envconfig:"COMPARE_NOISE_MIN_RELATIVE" min:">0" max:"<1" default:"0.2"`
	NoiseAbs     float64       `envconfig:"COMPARE_NOISE_MIN_ABSOLUTE" min:">0" max:"<1" default:"0.0003"`
	RepeatCache  int           `envconfig:"COMPARE_REPEAT_CACHE" default:"10000" min:"-1"`
	RepeatWindow time.Duration `envconfig:"COMPARE_REPEAT_WINDOW" min:"0s" default:"2s"`
	AIMaxDrop    float64       `envconfig:"COMPARE_AI_MAX_DROP" min:">0" max:"<1" default:"0.05"`
	AIAlpha      float64       `envconfig:"COMPARE_AI_ALPHA" min:">0" max:"<1" default:"0.05"`
	AIMinSamples int64         `envconfig:"COMPARE_AI_MIN_SAMPLES" default:"30" min:"1"`
	Longitude    float64       `envconfig:"COMPARE_SAJU_LONGITUDE" min:"-180" max:"180" default:"126.978"`
	Examples     int           `envconfig:"STORE_EXAMPLES" default:"5" min:"-1" max:"1000" desc:"example pairs kept per signature (-1 none)"`
	Retention    time.Duration `envconfig:"STORE_RETENTION" default:"336h" min:"1h" desc:"how long pairs are kept (roll-ups and examples stay)"`
}

// validate checks the numeric settings: each error names the variable
// and the allowed range (the comparator's own check names its fields).
func (e compareEnv) validate() error {
	var errs []error
	if e.Batch < 1 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_BATCH %d: must be at least 1", e.Batch))
	}
	if e.AckWait <= 0 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_ACK_WAIT %v: must be positive", e.AckWait))
	}
	if e.NoiseRel <= 0 || e.NoiseRel >= 1 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_NOISE_MIN_RELATIVE %v: must be in (0, 1)", e.NoiseRel))
	}
	if e.NoiseAbs <= 0 || e.NoiseAbs >= 1 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_NOISE_MIN_ABSOLUTE %v: must be in (0, 1)", e.NoiseAbs))
	}
	if e.RepeatWindow <= 0 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_REPEAT_WINDOW %v: must be positive", e.RepeatWindow))
	}
	if e.RepeatCache < -1 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_REPEAT_CACHE %d: must be -1 (off) or at least 0", e.RepeatCache))
	}
	if e.AIMaxDrop <= 0 || e.AIMaxDrop >= 1 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_AI_MAX_DROP %v: must be in (0, 1)", e.AIMaxDrop))
	}
	if e.AIAlpha <= 0 || e.AIAlpha >= 1 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_AI_ALPHA %v: must be in (0, 1)", e.AIAlpha))
	}
	if e.AIMinSamples < 1 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_AI_MIN_SAMPLES %d: must be at least 1", e.AIMinSamples))
	}
	if e.Longitude < -180 || e.Longitude > 180 || e.Longitude == 0 {
		errs = append(errs, fmt.Errorf("SHADOWCUBE_COMPARE_SAJU_LONGITUDE %v: must be in [-180, 180], not 0", e.Longitude))
	}
	return errors.Join(errs...)
}

func (e compareEnv) noise() comparator.NoiseConfig {
	return comparator.NoiseConfig{Disabled: e.NoiseOff, MinRelative: e.NoiseRel, MinAbsolute: e.NoiseAbs}
}

func (e compareEnv) ai() comparator.AIConfig {
	return comparator.AIConfig{MaxDrop: e.AIMaxDrop, Alpha: e.AIAlpha, MinSamples: e.AIMinSamples}
}

// routeRules turns the routes file's compare sections into comparator rules.
func routeRules(f *routes.File) []comparator.RouteRules {
	var out []comparator.RouteRules
	for _, s := range f.Services {
		for _, r := range s.Routes {
			c := r.Compare
			out = append(out, comparator.RouteRules{Service: s.Name, Route: r.Route, Rules: comparator.Rules{
				Kind: c.Kind, Ignore: c.Ignore, Tolerance: c.Tolerance, Unordered: c.Unordered, Headers: c.Headers,
				Presence: c.Presence, Normalize: comparator.StringNorm{
					Trim:          slices.Contains(c.Normalize, routes.NormTrim),
					CollapseSpace: slices.Contains(c.Normalize, routes.NormCollapseSpace),
					FoldCase:      slices.Contains(c.Normalize, routes.NormFoldCase),
				},
				Label: c.Label, Score: c.Score, TruthHeader: c.TruthHeader,
			}})
		}
	}
	return out
}

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

Flags (each overrides its environment variable):
  --routes FILE      SHADOWCUBE_ROUTES_FILE          routes file (required)
  --accepted FILE    SHADOWCUBE_COMPARE_ACCEPTED_FILE accepted signatures (none)
  --durable NAME     SHADOWCUBE_COMPARE_DURABLE      durable consumer name (comparator)
  --batch N          SHADOWCUBE_COMPARE_BATCH        pairs fetched and stored per transaction (256)

Environment only:
  SHADOWCUBE_STORE_DATABASE_URL        PostgreSQL of the mismatch store (required)
  SHADOWCUBE_COMPARE_SCHEMA            schema of the store (shadowcube_compare)
  SHADOWCUBE_STORE_EXAMPLES            example pairs (full answers) kept per signature (5; -1 none)
  SHADOWCUBE_STORE_RETENTION           how long pairs are kept; older ones are deleted in batches,
                                       roll-ups and examples stay (336h = 14 days)
  SHADOWCUBE_COMPARE_ACK_WAIT          consumer ack wait (60s)
  SHADOWCUBE_COMPARE_NOISE_DISABLED    true turns noise suppression off (false)
  SHADOWCUBE_COMPARE_NOISE_MIN_RELATIVE  Diffy relative threshold (0.2)
  SHADOWCUBE_COMPARE_NOISE_MIN_ABSOLUTE  Diffy absolute threshold, share of requests (0.0003)
  SHADOWCUBE_COMPARE_REPEAT_CACHE      request fingerprints kept to learn noise from repeats
                                       when there is no secondary (10000; -1 disables)
  SHADOWCUBE_COMPARE_REPEAT_WINDOW     two captures of one request this close count as
                                       repeats without a watermark showing no write between (2s)
  SHADOWCUBE_COMPARE_AI_MAX_DROP       allowed accuracy drop of an AI cube (0.05 = 5 pp)
  SHADOWCUBE_COMPARE_AI_ALPHA          significance level of the drop test (0.05)
  SHADOWCUBE_COMPARE_AI_MIN_SAMPLES    labelled pairs needed before flagging (30)
  SHADOWCUBE_COMPARE_SAJU_LONGITUDE    saju: degrees east for local mean time when the
                                       request names no known city (126.978, Seoul)

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
	var (
		routesFile, accepted, durable string
		batch                         int
	)
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Compare legacy and cube answers (rules, saju, AI, noise) and store the verdicts",
		Long:  compareHelp + commonEnvHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var env compareEnv
			if err := process.Load(&env); err != nil {
				return err
			}
			f := cmd.Flags()
			if f.Changed("routes") {
				env.RoutesFile = routesFile
			}
			if f.Changed("accepted") {
				env.AcceptedFile = accepted
			}
			if f.Changed("durable") {
				env.Durable = durable
			}
			if f.Changed("batch") {
				if batch < 1 {
					return usageError{fmt.Errorf("compare: --batch %d: must be at least 1", batch)}
				}
				env.Batch = batch
			}
			if err := env.validate(); err != nil {
				return usageError{fmt.Errorf("compare: %w", err)}
			}
			if env.RoutesFile == "" {
				return usageError{fmt.Errorf("compare: no routes file: pass --routes FILE or set SHADOWCUBE_ROUTES_FILE")}
			}
			if env.StoreURL == "" {
				return usageError{fmt.Errorf("compare: SHADOWCUBE_STORE_DATABASE_URL is not set: the mismatch store's PostgreSQL URL")}
			}
			rf, err := routes.Load(env.RoutesFile)
			if err != nil {
				return err
			}
			var acc *comparator.Accepted
			if env.AcceptedFile != "" {
				if acc, err = comparator.LoadAccepted(env.AcceptedFile); err != nil {
					return err
				}
			}
			cmpr, err := comparator.New(comparator.Config{
				Routes: routeRules(rf), Noise: env.noise(), AI: env.ai(), Accepted: acc, RepeatCache: env.RepeatCache, RepeatWindow: env.RepeatWindow,
				Saju: comparator.SajuConfig{Longitude: env.Longitude},
			})
			if err != nil {
				return fmt.Errorf("%s: %w", env.RoutesFile, err)
			}
			ctx, e, err := setup(cmd, "compare", true)
			if err != nil {
				return err
			}
			defer e.Close()
			store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: env.StoreURL, Schema: env.Schema,
				Examples: env.Examples, Retention: env.Retention})
			if err != nil {
				return err
			}
			e.OnClose(func() { store.Close() })
			if err := store.Seed(ctx, cmpr); err != nil {
				return err
			}
			conn, err := e.ConnectNATS(ctx)
			if err != nil {
				return err
			}
			cons, err := comparator.NewConsumer(comparator.ConsumerConfig{Durable: env.Durable, Batch: env.Batch, AckWait: env.AckWait},
				comparator.Deps{JetStream: conn.JS, Comparator: cmpr, Store: store, Logger: e.Log, Registerer: e.Reg})
			if err != nil {
				return err
			}
			e.Log.Info("comparing shadow results", "durable", env.Durable, "routes", len(routeRules(rf)))
			return cons.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&routesFile, "routes", "", "routes file (SHADOWCUBE_ROUTES_FILE)")
	f.StringVar(&accepted, "accepted", "", "accepted-signatures YAML file (SHADOWCUBE_COMPARE_ACCEPTED_FILE)")
	f.StringVar(&durable, "durable", "comparator", "durable consumer name shared by comparators (SHADOWCUBE_COMPARE_DURABLE)")
	f.IntVar(&batch, "batch", 256, "pairs fetched and stored per transaction (SHADOWCUBE_COMPARE_BATCH)")
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
			var env compareEnv
			if err := process.Load(&env); err != nil {
				return err
			}
			if env.StoreURL == "" {
				return usageError{fmt.Errorf("compare show: SHADOWCUBE_STORE_DATABASE_URL is not set")}
			}
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("compare show: --format %q: want text or json", format)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: env.StoreURL, Schema: env.Schema})
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
			var env compareEnv
			if err := process.Load(&env); err != nil {
				return err
			}
			if env.StoreURL == "" {
				return usageError{fmt.Errorf("compare summary: SHADOWCUBE_STORE_DATABASE_URL is not set")}
			}
			if limit < 1 {
				return usageError{fmt.Errorf("compare summary: --limit %d: must be at least 1", limit)}
			}
			if err := env.validate(); err != nil {
				return usageError{fmt.Errorf("compare summary: %w", err)}
			}
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("compare summary: --format %q: want text or json", format)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: env.StoreURL, Schema: env.Schema})
			if err != nil {
				return err
			}
			defer store.Close()
			sum, err := store.Summary(ctx, limit, env.ai(), env.noise())
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
