package wiring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/analyst"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/internal/webui"
)

// AnalystStore is where the mismatch store is (report, gate, serve, and
// reconcile recording its result for the gate).
type AnalystStore struct {
	StoreURL string `envconfig:"STORE_DATABASE_URL" desc:"PostgreSQL of the mismatch store (required)"`
	Schema   string `envconfig:"COMPARE_SCHEMA" default:"shadowcube_compare" desc:"schema of the mismatch store"`
}

// check names the missing store URL of command name.
func (s *AnalystStore) check(name string) error {
	if s.StoreURL == "" {
		return fmt.Errorf("%s: SHADOWCUBE_STORE_DATABASE_URL is not set: the mismatch store's PostgreSQL URL", name)
	}
	return nil
}

func (s *AnalystStore) open(ctx context.Context, maxConns int32) (*comparator.Store, error) {
	return comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: s.StoreURL, Schema: s.Schema, MaxConns: maxConns})
}

// AnalystWindow is the end of the time window and the service filter of
// report and gate (their start differs in default).
type AnalystWindow struct {
	Until   string `flag:"until" desc:"end of the window: a duration back from now or an RFC 3339 time (default: now)"`
	Service string `flag:"service" desc:"only this service"`
}

// AnalystAccepted names the accepted-signatures file report and gate judge
// with, and the gate criteria.
type AnalystAccepted struct {
	AcceptedFile string `envconfig:"COMPARE_ACCEPTED_FILE" flag:"accepted" desc:"accepted-signatures file deciding which signatures count as accepted (none: as recorded at compare time)"`
	Criteria     string `flag:"criteria" desc:"gate criteria YAML (see 'shadowcube gate --help'; default built in)"`
}

// load reads the criteria file (the built-in criteria when none) and the
// accepted-signatures file (nil when none).
func (a *AnalystAccepted) load() (*analyst.Criteria, *comparator.Accepted, error) {
	crit, err := LoadCriteria(a.Criteria)
	if err != nil || a.AcceptedFile == "" {
		return crit, nil, err
	}
	acc, err := comparator.LoadAccepted(a.AcceptedFile)
	return crit, acc, err
}

// LoadCriteria reads the gate criteria of path; "" is the built-in ones.
func LoadCriteria(path string) (*analyst.Criteria, error) {
	if path == "" {
		return analyst.DefaultCriteria(), nil
	}
	return analyst.LoadCriteria(path)
}

// query turns the window's flags into a query at now.
func (w *AnalystWindow) query(since string, now time.Time) (analyst.Query, error) {
	q := analyst.Query{Service: w.Service}
	var err error
	if q.Since, err = analyst.ParseWhen(since, now); err != nil {
		return q, fmt.Errorf("--since %w", err)
	}
	if q.Until, err = analyst.ParseWhen(w.Until, now); err != nil {
		return q, fmt.Errorf("--until %w", err)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, fmt.Errorf("--since %s is not before --until %s", since, w.Until)
	}
	return q, nil
}

// ReportEnv is the configuration of `shadowcube report`.
type ReportEnv struct {
	AnalystStore
	AnalystAccepted
	Since string `flag:"since" desc:"start of the window: a duration back from now (24h, 7d) or an RFC 3339 time (default: everything kept)"`
	AnalystWindow
	Route     string `flag:"route" desc:"only this route"`
	Cause     string `flag:"cause" desc:"only pairs carrying this cause tag"`
	Signature string `flag:"signature" desc:"only pairs of this signature"`
	Verdict   string `flag:"verdict" desc:"only pairs of this verdict (match, mismatch, noise, error, moved-on, skipped)"`
	Format    string `flag:"format" default:"html" desc:"html, csv or json"`
	Out       string `flag:"out" desc:"output file (html, json; - = stdout) or directory (csv) (default shadowcube-report.html, shadowcube-report-csv, -)"`
	Examples  int    `flag:"examples" desc:"examples shown per signature (0 = all kept)"`
}

// Check reads the flags and files of a report at now into its query and
// options; every error is a usage error.
func (e *ReportEnv) Check(now time.Time) (analyst.Query, analyst.Options, error) {
	opts := analyst.Options{Examples: e.Examples, Now: func() time.Time { return now }}
	q, err := e.query(e.Since, now)
	if err != nil {
		return q, opts, err
	}
	q.Route, q.Cause, q.Signature, q.Verdict = e.Route, e.Cause, e.Signature, e.Verdict
	switch e.Format {
	case "html", "csv", "json":
	default:
		return q, opts, fmt.Errorf("--format %q: want html, csv or json", e.Format)
	}
	if e.Format == "csv" && e.Out == "-" {
		return q, opts, errors.New("--format csv writes one file per table: --out names a directory, not -")
	}
	if e.Examples < 0 {
		return q, opts, fmt.Errorf("--examples %d: want 0 (all) or more", e.Examples)
	}
	if opts.Criteria, opts.Accepted, err = e.load(); err != nil {
		return q, opts, err
	}
	return q, opts, e.check("report")
}

// Report builds the report of q from the store (and NATS when set) and
// writes it; it returns the path written ("" for p.Stdout).
func Report(ctx context.Context, p *Process, e *ReportEnv, q analyst.Query, opts analyst.Options) (string, error) {
	st, err := e.open(ctx, 4)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if opts.Inputs, err = GateInputs(ctx, p); err != nil {
		return "", err
	}
	f, err := analyst.Build(ctx, st, q, opts)
	if err != nil {
		return "", err
	}
	return writeReport(p.Stdout, f, e.Format, e.Out)
}

// writeReport writes f in format to out and returns the path written ("" for stdout).
func writeReport(stdout io.Writer, f *analyst.Figures, format, out string) (string, error) {
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
		return "", write(stdout, f)
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

// GateEnv is the configuration of `shadowcube gate`. The roll-ups are kept
// for ever: a verdict judges recent traffic (the cube as deployed now), not
// a month-old build, hence the 7-day default window.
type GateEnv struct {
	AnalystStore
	AnalystAccepted
	Since string `flag:"since" default:"7d" desc:"start of the window: a duration back from now (24h, 7d) or an RFC 3339 time"`
	AnalystWindow
	Format string `flag:"format" default:"text" desc:"text or json"`
}

// Check reads the flags and files of a gate at now; every error is a usage
// error.
func (e *GateEnv) Check(now time.Time) (analyst.Query, *analyst.Criteria, *comparator.Accepted, error) {
	q, err := e.query(e.Since, now)
	if err != nil {
		return q, nil, nil, err
	}
	if e.Format != "text" && e.Format != "json" {
		return q, nil, nil, fmt.Errorf("--format %q: want text or json", e.Format)
	}
	crit, acc, err := e.load()
	if err != nil {
		return q, nil, nil, err
	}
	return q, crit, acc, e.check("gate")
}

// Gate scores crit on the store's roll-ups of q (and NATS when set) at now.
func Gate(ctx context.Context, p *Process, e *GateEnv, q analyst.Query, crit *analyst.Criteria, acc *comparator.Accepted, now time.Time) (*analyst.Gate, error) {
	st, err := e.open(ctx, 4)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	in, err := GateInputs(ctx, p)
	if err != nil {
		return nil, err
	}
	in.Accepted = acc
	return analyst.Evaluate(ctx, st, q, crit, in, now)
}

// GateInputs connects to NATS when SHADOWCUBE_NATS_URL is set (never an
// embedded server: a gate must read the pipeline's own streams).
func GateInputs(ctx context.Context, p *Process) (analyst.GateInputs, error) {
	if p.Common.NATSURL == "" {
		return analyst.GateInputs{}, nil
	}
	conn, err := p.ConnectNATS(ctx)
	if err != nil {
		return analyst.GateInputs{}, err
	}
	return analyst.GateInputs{JS: conn.JS}, nil
}

// RecordReconcile records each target's reconcile result (all: the table
// reports of the run, started at start) in the mismatch store for the
// gate, when SHADOWCUBE_STORE_DATABASE_URL is set. whole says every table
// of the targets was selected (a partial run is never clean). A failure to
// record is logged; it does not change reconcile's verdict.
func RecordReconcile(ctx context.Context, p *Process, all []consumers.TableReport, whole bool, start time.Time) {
	var s AnalystStore
	if err := process.Load(&s); err != nil || s.StoreURL == "" {
		return
	}
	st, err := s.open(ctx, 1)
	if err != nil {
		p.Log.Warn("reconcile result not recorded in the mismatch store", "err", redact.Err(err))
		return
	}
	defer st.Close()
	runs := map[string]*analyst.ReconcileRun{}
	var order []string
	for _, rep := range all {
		run := runs[rep.Target]
		if run == nil {
			run = &analyst.ReconcileRun{Target: rep.Target, StartedAt: start, FinishedAt: time.Now(), Clean: whole}
			if !whole {
				run.Detail = "partial: only some tables compared (--table)"
			}
			runs[rep.Target] = run
			order = append(order, rep.Target)
		}
		run.Tables++
		run.Differences += int64(rep.Differences)
		if rep.Differences > 0 {
			run.Clean = false
		}
	}
	for _, t := range order {
		if err := analyst.RecordReconcile(ctx, st, *runs[t]); err != nil {
			p.Log.Warn("reconcile result not recorded in the mismatch store", "target", t, "err", redact.Err(err))
		}
	}
}

// ServeEnv is the configuration of `shadowcube serve`; flags override it.
type ServeEnv struct {
	Addr        string        `envconfig:"SERVE_ADDR" flag:"addr" default:"127.0.0.1:8088" desc:"listen address of the web UI (loopback only by default; :8088 for every interface)"`
	Token       webui.Token   `envconfig:"UI_TOKEN" desc:"token that allows accepting and un-accepting signatures (bearer header or login form); empty: read-only UI. A secret: never logged"`
	AcceptedOut string        `envconfig:"SERVE_ACCEPTED_OUT" flag:"accepted-out" desc:"accepted-signatures YAML file rewritten atomically after every change (the file compare --accepted reads)"`
	Refresh     time.Duration `envconfig:"SERVE_REFRESH" flag:"refresh" default:"30s" min:"0s" max:"24h" desc:"how often pages reload themselves (0 turns auto-refresh off; refresh= in the URL overrides)"`
	TLSCert     string        `envconfig:"SERVE_TLS_CERT" desc:"certificate file: serve HTTPS (with SHADOWCUBE_SERVE_TLS_KEY)"`
	TLSKey      string        `envconfig:"SERVE_TLS_KEY" desc:"private key file of SHADOWCUBE_SERVE_TLS_CERT"`
	Accepted    string        `envconfig:"COMPARE_ACCEPTED_FILE" flag:"accepted" desc:"accepted-signatures file compare reads: its route + cause rules count as accepted, its signatures are imported once (default: --accepted-out when that file exists)"`
	Criteria    string        `flag:"criteria" desc:"gate criteria YAML (see 'shadowcube gate --help'; default built in)"`
	AnalystStore
}

// Check rejects what the bounds tags cannot say and reads the criteria;
// every error is a usage error.
func (e *ServeEnv) Check() (*analyst.Criteria, error) {
	if e.Addr == "" {
		return nil, errors.New("serve: empty listen address: pass --addr or set SHADOWCUBE_SERVE_ADDR")
	}
	if err := e.check("serve"); err != nil {
		return nil, err
	}
	if (e.TLSCert == "") != (e.TLSKey == "") {
		return nil, errors.New("serve: set both SHADOWCUBE_SERVE_TLS_CERT and SHADOWCUBE_SERVE_TLS_KEY, or neither")
	}
	return LoadCriteria(e.Criteria)
}

// ServeUI runs the web UI until ctx ends (or the server fails), then lets
// requests in flight finish within SHADOWCUBE_SHUTDOWN_TIMEOUT.
func ServeUI(ctx context.Context, p *Process, e *ServeEnv, crit *analyst.Criteria) error {
	store, err := e.open(ctx, 0)
	if err != nil {
		return err
	}
	p.OnClose(func() { store.Close() })
	deps := webui.Deps{Store: store, Log: p.Log}
	// Only an existing NATS: the gate reads its sync watermarks and DLQs.
	in, err := GateInputs(ctx, p)
	if err != nil {
		return err
	}
	deps.JS = in.JS
	r := e.Refresh
	if r == 0 {
		r = -1 // off
	}
	srv, err := webui.Start(ctx, webui.Config{Addr: e.Addr, Token: e.Token, AcceptedIn: e.Accepted, AcceptedOut: e.AcceptedOut,
		Refresh: r, Criteria: crit, TLSCert: e.TLSCert, TLSKey: e.TLSKey}, deps)
	if err != nil {
		return err
	}
	scheme := "http"
	if e.TLSCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(p.Stdout, "serving the report on %s://%s/\n", scheme, srv.Addr())
	select {
	case <-ctx.Done():
	case <-srv.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), p.ShutdownTimeout())
	defer cancel()
	if err := srv.Close(sctx); err != nil {
		return fmt.Errorf("serve: stop: %w", err)
	}
	p.Log.Info("web UI stopped")
	return nil
}
