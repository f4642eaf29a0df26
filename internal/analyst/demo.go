package analyst

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/comparator"
)

// DemoDir is where the demo writes its report by default.
const DemoDir = "shadowcube-demo"

// DemoResult is what Demo wrote.
type DemoResult struct {
	Gate *Gate
	HTML string // path of report.html
	JSON string // path of report.json
}

// Demo ends `shadowcube demo`: it records the demo's reconcile results
// (for the gate), builds the figures of everything in the store with the
// default criteria (sync lag and DLQ read through js when not nil), writes
// report.html and report.json into dir (created when missing), and prints
// the gate verdict per service and the report's path to w. An empty dir is
// DemoDir.
func Demo(ctx context.Context, w io.Writer, st *comparator.Store, js jetstream.JetStream, dir string, reconciled []ReconcileRun) (*DemoResult, error) {
	if dir == "" {
		dir = DemoDir
	}
	for _, r := range reconciled {
		if err := RecordReconcile(ctx, st, r); err != nil {
			return nil, err
		}
	}
	f, err := Build(ctx, st, Query{}, Options{Criteria: DefaultCriteria(), Inputs: GateInputs{JS: js}, Examples: 3})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo report: %w", err)
	}
	res := &DemoResult{Gate: f.Gate, HTML: filepath.Join(dir, "report.html"), JSON: filepath.Join(dir, "report.json")}
	for _, out := range []struct {
		path  string
		write func(io.Writer, *Figures) error
	}{{res.HTML, WriteHTML}, {res.JSON, WriteJSON}} {
		fh, err := os.Create(out.path)
		if err != nil {
			return nil, fmt.Errorf("demo report: %w", err)
		}
		if err := out.write(fh, f); err != nil {
			fh.Close()
			return nil, fmt.Errorf("demo report: write %s: %w", out.path, err)
		}
		if err := fh.Close(); err != nil {
			return nil, fmt.Errorf("demo report: write %s: %w", out.path, err)
		}
	}
	fmt.Fprintln(w, "== gate")
	for _, v := range f.Gate.Services {
		var failed []string
		for _, ch := range v.Checks {
			if ch.Result != Pass {
				line := fmt.Sprintf("%s %s: %s, %s (threshold %s)", ch.Criterion, ch.Subject, ch.Result, ch.Shown, ch.Threshold)
				if ch.Detail != "" {
					line += ": " + ch.Detail
				}
				failed = append(failed, line)
			}
		}
		fmt.Fprintf(w, "%s: %s\n", v.Service, v.Verdict)
		for _, s := range failed {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	abs, err := filepath.Abs(res.HTML)
	if err != nil {
		abs = res.HTML
	}
	fmt.Fprintf(w, "== report\n%s (JSON: %s), generated %s\n", abs, res.JSON, f.GeneratedAt.Format(time.RFC3339))
	return res, nil
}
