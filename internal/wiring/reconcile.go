package wiring

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/redact"
)

// MappingEnv names the mapping file (dlq replay of sync entries).
type MappingEnv struct {
	MappingFile string `envconfig:"MAPPING_FILE" flag:"mapping" desc:"mapping file (required)"`
}

// ReconcileEnv is the configuration of `shadowcube reconcile`.
type ReconcileEnv struct {
	MappingEnv
	Tables      []string      `flag:"table" desc:"compare only this table (source or target name; repeatable)"`
	Targets     []string      `flag:"target" desc:"compare only this target (repeatable)"`
	Format      string        `flag:"format" default:"text" desc:"output: text, or json: {\"tables\":[...],\"differences\":N}"`
	LeafRows    int64         `flag:"leaf-rows" default:"1000" min:"1" desc:"range size compared row by row"`
	Settle      time.Duration `flag:"settle" desc:"wait up to this for sync to catch up, then re-check differing rows (0: off)"`
	MaxDiffs    int           `flag:"max-diffs" default:"1000" min:"1" desc:"differences listed per table (all are counted)"`
	NoSequences bool          `flag:"no-sequences" desc:"skip the check of sequences feeding mapped columns"`
	Pushgateway string        `envconfig:"RECONCILE_PUSHGATEWAY" flag:"pushgateway" desc:"push each target's figures to this Prometheus Pushgateway (job shadowcube_reconcile): last run time, differences, tables compared, failed; the alert rules ShadowcubeReconcileStale and ShadowcubeReconcileDirty read them"`
}

// Check rejects what the bounds tags cannot say.
func (e *ReconcileEnv) Check() error {
	if e.Format != "text" && e.Format != "json" {
		return &FlagError{Flag: "format", Value: e.Format, Msg: "want text or json"}
	}
	if e.Settle < 0 {
		return &FlagError{Flag: "settle", Value: e.Settle.String(), Msg: "must be 0 (off) or positive"}
	}
	return nil
}

// Select resolves --target and --table against the mapping. An unknown
// target, or a table that no selected target maps, is an error listing the
// known ones: a typo must never compare nothing and pass.
func (m *Mapping) Select(targets, tables []string) ([]ReconcileTarget, error) {
	if err := m.CheckTargets(targets); err != nil {
		return nil, err
	}
	var out []ReconcileTarget
	matched := map[string]bool{}
	var tableNames []string
	for _, t := range m.Selected(targets) {
		for _, n := range t.TableNames() {
			tableNames = append(tableNames, t.Name+": "+n)
		}
		sel := ReconcileTarget{Target: t}
		for _, name := range tables {
			if slices.ContainsFunc(t.Tables, func(tm *consumers.TableMap) bool { return tm.Matches(name) }) {
				sel.Tables = append(sel.Tables, name)
				matched[name] = true
			}
		}
		if len(tables) > 0 && len(sel.Tables) == 0 {
			continue
		}
		out = append(out, sel)
	}
	for _, name := range tables {
		if !matched[name] {
			return nil, &FlagError{Flag: "table", Value: name, Msg: "no selected target maps such a table (known: " + strings.Join(tableNames, "; ") + ")"}
		}
	}
	return out, nil
}

// ReconcileTarget is one target to reconcile and the tables of it to
// compare (nil: all).
type ReconcileTarget struct {
	Target *consumers.Target
	Tables []string
}

// Reconcile compares each selected target with the source through the
// mapping, with the pinned session settings (Mapping.Connect), and pushes
// each target's figures to pushURL when set. base holds the comparison
// settings (LeafRows, Settle, MaxDiffs, SkipSequences); the rest is filled
// per target. It stops at the first error.
func Reconcile(ctx context.Context, p *Process, m *Mapping, selected []ReconcileTarget, base consumers.ReconcileConfig, pushURL string) ([]consumers.TableReport, error) {
	var all []consumers.TableReport
	for _, sel := range selected {
		t := sel.Target
		var reps []consumers.TableReport
		err := m.Connect(ctx, t, func(src, dst *pgx.Conn) (err error) {
			cfg := base
			cfg.Mapping, cfg.Target, cfg.Source, cfg.Dest, cfg.Tables = m.Mapping, t, src, dst, sel.Tables
			cfg.OnSettle = func(table string, n int) {
				p.Log.Info("differences found; waiting for sync to catch up before re-checking them",
					"table", table, "differences", n, "settle", cfg.Settle)
			}
			reps, err = consumers.Reconcile(ctx, cfg)
			return err
		})
		pushReconcile(ctx, p, pushURL, t.Name, reps, err)
		all = append(all, reps...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// pushReconcile pushes one target's figures to a Pushgateway, when one is
// configured. A failed push is logged with the URL redacted; it does not
// change the exit status (the comparison's verdict stands, and the stale
// alert fires when pushes stop arriving).
func pushReconcile(ctx context.Context, p *Process, url, target string, reps []consumers.TableReport, runErr error) {
	if url == "" {
		return
	}
	reg := prometheus.NewRegistry()
	m, err := consumers.NewReconcileMetrics(reg)
	if err != nil {
		p.Log.Error("reconcile metrics", "err", err)
		return
	}
	m.Record(reps, runErr, time.Now())
	if err := push.New(url, "shadowcube_reconcile").Grouping("target", target).Gatherer(reg).PushContext(ctx); err != nil {
		p.Log.Error("push reconcile figures to the Pushgateway failed", "pushgateway", redact.URLString(url), "target", target, "err", redact.Err(err))
		return
	}
	p.Log.Info("reconcile figures pushed", "pushgateway", redact.URLString(url), "target", target)
}
