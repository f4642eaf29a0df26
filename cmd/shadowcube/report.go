package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/analyst"
	"github.com/heal7/shadowcube/internal/process"
)

// analystEnv is the configuration of `report` and `gate`: where the
// mismatch store is.
type analystEnv struct {
	StoreURL     string `envconfig:"STORE_DATABASE_URL" desc:"PostgreSQL of the mismatch store"`
	Schema       string `envconfig:"COMPARE_SCHEMA" default:"shadowcube_compare" desc:"schema of the mismatch store"`
	AcceptedFile string `envconfig:"COMPARE_ACCEPTED_FILE" desc:"accepted-signatures file deciding which signatures count as accepted"`
}

const analystEnvHelp = `
Environment:
  SHADOWCUBE_STORE_DATABASE_URL   PostgreSQL of the mismatch store (required)
  SHADOWCUBE_COMPARE_SCHEMA       schema of the store (shadowcube_compare)
  SHADOWCUBE_COMPARE_ACCEPTED_FILE accepted-signatures file (--accepted)`

// reportWindow is the time window and the filters of report and gate.
type reportWindow struct {
	since, until string
	q            analyst.Query
}

func (w *reportWindow) register(cmd *cobra.Command, filters bool, since string) {
	f := cmd.Flags()
	usage := "start of the window: a duration back from now (24h, 7d) or an RFC 3339 time"
	if since == "" {
		usage += " (default: everything kept)"
	}
	f.StringVar(&w.since, "since", since, usage)
	f.StringVar(&w.until, "until", "", "end of the window: a duration back from now or an RFC 3339 time (default: now)")
	f.StringVar(&w.q.Service, "service", "", "only this service")
	if filters {
		f.StringVar(&w.q.Route, "route", "", "only this route")
		f.StringVar(&w.q.Cause, "cause", "", "only pairs carrying this cause tag")
		f.StringVar(&w.q.Signature, "signature", "", "only pairs of this signature")
		f.StringVar(&w.q.Verdict, "verdict", "", "only pairs of this verdict (match, mismatch, noise, error, moved-on, skipped)")
	}
}

// parseWhen reads a --since/--until value (analyst.ParseWhen).
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	t, err := analyst.ParseWhen(s, now)
	if err != nil {
		return t, usageError{fmt.Errorf("--%s %w", flag, err)}
	}
	return t, nil
}

func (w *reportWindow) query(now time.Time) (analyst.Query, error) {
	q := w.q
	var err error
	if q.Since, err = parseWhen("since", w.since, now); err != nil {
		return q, err
	}
	if q.Until, err = parseWhen("until", w.until, now); err != nil {
		return q, err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, usageError{fmt.Errorf("--since %s is not before --until %s", w.since, w.until)}
	}
	return q, nil
}

// openAnalystStore reads analystEnv and opens the store.
func openAnalystStore(cmd *cobra.Command, name string) (*comparator.Store, analystEnv, error) {
	var env analystEnv
	if err := process.Load(&env); err != nil {
		return nil, env, err
	}
	if env.StoreURL == "" {
		return nil, env, usageError{fmt.Errorf("%s: SHADOWCUBE_STORE_DATABASE_URL is not set: the mismatch store's PostgreSQL URL", name)}
	}
	st, err := comparator.OpenStore(cmd.Context(), comparator.StoreConfig{DatabaseURL: env.StoreURL, Schema: env.Schema, MaxConns: 4})
	return st, env, err
}

func newReportCmd() *cobra.Command {
	var w reportWindow
	var format, out, accepted, criteria string
	var examples int
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write the mismatch report (self-contained HTML, or CSV/JSON) from the mismatch store",
		Long: `report reads the mismatch store's hourly roll-ups and example pairs (never a
scan of all pairs) and writes, per service and route: pairs compared, match
rate with a Wilson 95% interval, a trend chart per hour, the top differing
field paths, mismatches by cause tag and by signature (accepted ones apart),
AI accuracy legacy vs cube with the rollback rule's verdict, latency p50/p95
of both sides, cube errors and stale share, the gate's verdict, and for each
signature its example pairs side by side with the differing paths marked.

--format html (default) writes one HTML file (no external assets; opens
offline); csv writes one CSV file per table into the --out directory; json
writes one document. All three hold the same numbers.

Flags:
  --since T, --until T   window: a duration back from now (24h, 7d) or a time (RFC 3339)
  --service, --route, --cause, --signature, --verdict   filters
  --format html|csv|json (html)
  --out PATH             file (html, json; - = stdout) or directory (csv)
                         (default shadowcube-report.html, shadowcube-report-csv, -)
  --accepted FILE        accepted-signatures file: decides which signatures count as accepted
                         (default SHADOWCUBE_COMPARE_ACCEPTED_FILE; none: as recorded at compare time)
  --criteria FILE        gate criteria (see 'shadowcube gate --help'; default built in)
  --examples N           examples shown per signature (0 = all kept)

Exit status: 0 written, 1 failure, 2 bad usage.` + analystEnvHelp + `
  SHADOWCUBE_NATS_URL             NATS for the gate's sync watermarks and DLQ (empty: "no data")`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			q, err := w.query(now)
			if err != nil {
				return err
			}
			switch format {
			case "html", "csv", "json":
			default:
				return usageError{fmt.Errorf("--format %q: want html, csv or json", format)}
			}
			if format == "csv" && out == "-" {
				return usageError{fmt.Errorf("--format csv writes one file per table: --out names a directory, not -")}
			}
			if examples < 0 {
				return usageError{fmt.Errorf("--examples %d: want 0 (all) or more", examples)}
			}
			crit, err := loadCriteriaFlag(criteria)
			if err != nil {
				return err
			}
			st, env, err := openAnalystStore(cmd, "report")
			if err != nil {
				return err
			}
			defer st.Close()
			if !cmd.Flags().Changed("accepted") {
				accepted = env.AcceptedFile
			}
			in, done, err := gateInputs(cmd)
			if err != nil {
				return err
			}
			defer done()
			opts := analyst.Options{Criteria: crit, Examples: examples, Now: func() time.Time { return now }, Inputs: in}
			if accepted != "" {
				if opts.Accepted, err = comparator.LoadAccepted(accepted); err != nil {
					return usageError{err}
				}
			}
			f, err := analyst.Build(cmd.Context(), st, q, opts)
			if err != nil {
				return err
			}
			path, err := writeReport(cmd, f, format, out)
			if err != nil {
				return err
			}
			if path != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "report: wrote %s\n", path)
			}
			return nil
		},
	}
	w.register(cmd, true, "")
	f := cmd.Flags()
	f.StringVar(&format, "format", "html", "html, csv or json")
	f.StringVar(&out, "out", "", "output file (html, json; - = stdout) or directory (csv)")
	f.StringVar(&accepted, "accepted", "", "accepted-signatures file (SHADOWCUBE_COMPARE_ACCEPTED_FILE)")
	f.StringVar(&criteria, "criteria", "", "gate criteria YAML (default built in)")
	f.IntVar(&examples, "examples", 0, "examples shown per signature (0 = all kept)")
	return cmd
}

// writeReport writes f in format to out and returns the path written ("" for stdout).
func writeReport(cmd *cobra.Command, f *analyst.Figures, format, out string) (string, error) {
	if format == "csv" {
		if out == "" {
			out = "shadowcube-report-csv"
		}
		return out, analyst.WriteCSV(out, f)
	}
	if out == "" && format == "html" {
		out = "shadowcube-report.html"
	}
	write := analyst.WriteHTML
	if format == "json" {
		write = analyst.WriteJSON
	}
	if out == "" || out == "-" {
		return "", write(cmd.OutOrStdout(), f)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	fh, err := os.Create(out)
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	if err := write(fh, f); err != nil {
		fh.Close()
		return "", fmt.Errorf("report: write %s: %w", out, err)
	}
	if err := fh.Close(); err != nil {
		return "", fmt.Errorf("report: write %s: %w", out, err)
	}
	return out, nil
}

func loadCriteriaFlag(path string) (*analyst.Criteria, error) {
	if path == "" {
		return analyst.DefaultCriteria(), nil
	}
	c, err := analyst.LoadCriteria(path)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}
