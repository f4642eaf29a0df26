package wiring

import (
	"context"
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
	Pushgateway string `envconfig:"RECONCILE_PUSHGATEWAY" flag:"pushgateway" desc:"push each target's figures to this Prometheus Pushgateway (job shadowcube_reconcile): last run time, differences, tables compared, failed; the alert rules ShadowcubeReconcileStale and ShadowcubeReconcileDirty read them"`
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
