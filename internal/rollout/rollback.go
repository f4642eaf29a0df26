package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/publisher"
)

// Step is one step of the rollback drill.
type Step struct {
	Name     string
	Duration time.Duration
	OK       bool
	Detail   string
}

// DrillReport is the outcome of a rollback drill.
type DrillReport struct {
	Service string
	Steps   []Step
	// CaughtUp is the time from the flag change to reverse sync having
	// applied everything the cube committed (zero when it did not get there).
	CaughtUp time.Duration
	Forward  []consumers.TableReport
	Reverse  []consumers.TableReport
}

// Clean reports whether every step passed and both reconciles found no
// difference.
func (d *DrillReport) Clean() bool {
	if len(d.Steps) == 0 {
		return false
	}
	for _, s := range d.Steps {
		if !s.OK {
			return false
		}
	}
	return true
}

// WriteText prints each step with its duration and verdict, then the result.
func (d *DrillReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "rollback drill of %s\n", d.Service)
	for i, s := range d.Steps {
		v := "ok"
		if !s.OK {
			v = "FAILED"
		}
		fmt.Fprintf(&b, "%d. %-40s %8s  %-6s %s\n", i+1, s.Name, s.Duration.Round(time.Millisecond), v, s.Detail)
	}
	if d.CaughtUp > 0 {
		fmt.Fprintf(&b, "flag change to caught up: %s\n", d.CaughtUp.Round(time.Millisecond))
	}
	if d.Clean() {
		b.WriteString("verdict: clean (every user on legacy, nothing the cube wrote is missing from legacy)\n")
	} else {
		b.WriteString("verdict: NOT clean (see the failed step)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Rollback runs the drill: flag to 0%, every tap applies it, no request left
// at the cube, reverse sync past the cube's WAL position of that moment,
// reconcile of both directions. progress (optional) gets each step as it
// ends. The report is returned even when a step fails; err is for setup
// failures only (bad config, NATS unreachable).
func Rollback(ctx context.Context, cfg Config, progress func(Step)) (*DrillReport, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	kv, err := cfg.kv(ctx)
	if err != nil {
		return nil, err
	}
	flags, err := publisher.OpenFlags(ctx, cfg.JS)
	if err != nil {
		return nil, err
	}
	d := &DrillReport{Service: cfg.Service}
	step := func(name string, f func() (bool, string)) bool {
		start := time.Now()
		ok, detail := f()
		s := Step{Name: name, Duration: time.Since(start), OK: ok, Detail: detail}
		d.Steps = append(d.Steps, s)
		if progress != nil {
			progress(s)
		}
		return ok
	}

	var changed time.Time
	if !step("set flag to 0%", func() (bool, string) {
		fl, err := flags.Set(ctx, cfg.Service, 0)
		if err != nil {
			return false, err.Error()
		}
		changed = fl.UpdatedAt
		return true, fmt.Sprintf("%s = 0%%", publisher.FlagKey(cfg.Service))
	}) {
		return d, nil
	}
	// taps report at least every 250 ms and at once on a change; a report
	// at 0% taken after the change proves the tap applies it
	var sawZero map[string]time.Time
	if !step("taps apply 0%", func() (bool, string) {
		var ok bool
		var detail string
		sawZero, ok, detail = waitTaps(ctx, kv, cfg, changed, cfg.FlagWait, func(r publisher.TapReport, _ map[string]time.Time) bool { return r.Percent == 0 })
		return ok, detail
	}) {
		return d, nil
	}
	if !step("no request in flight at the cube", func() (bool, string) {
		// a request routed to the cube just before the change is counted a
		// few instructions after its decision: take a report at least 20 ms
		// after the tap's first one at 0%
		_, ok, detail := waitTaps(ctx, kv, cfg, changed, cfg.InFlightWait, func(r publisher.TapReport, _ map[string]time.Time) bool {
			return r.Percent == 0 && r.CubeInFlight == 0 && r.At.Sub(sawZero[r.Instance]) >= 20*time.Millisecond
		})
		return ok, detail
	}) {
		return d, nil
	}
	if !step("reverse sync caught up with the cube", func() (bool, string) {
		lsn, err := markCube(ctx, cfg.CubeURL, cfg.Reverse.Source.Slot)
		if err != nil {
			return false, err.Error()
		}
		legacy, err := consumers.ConnectSource(ctx, cfg.LegacyURL)
		if err != nil {
			return false, fmt.Sprintf("connect to the legacy database: %v", err)
		}
		defer legacy.Close(context.Background())
		deadline := time.Now().Add(cfg.CatchUpWait)
		for {
			// the reverse checkpoint commits with the data it covers: the
			// watermark as legacy holds it
			cp, err := consumers.ReadCheckpoint(ctx, legacy, cfg.ReverseTarget, cfg.Reverse.Source.Slot)
			if err == nil && cp.LSN >= lsn {
				d.CaughtUp = time.Since(changed)
				return true, fmt.Sprintf("cube WAL %s applied to legacy (checkpoint %s)", lsn, cp.LSN)
			}
			if time.Now().After(deadline) {
				at := "no checkpoint yet"
				if err != nil {
					at = err.Error()
				} else if cp.LSN != 0 {
					at = "checkpoint at " + cp.LSN.String()
				}
				return false, fmt.Sprintf("reverse sync (target %s) did not reach the cube's WAL position %s within %s (%s): is cdc running on the cube database and sync with the reverse mapping?",
					cfg.ReverseTarget, lsn, cfg.CatchUpWait, at)
			}
			if !sleep(ctx, 5*time.Millisecond) {
				return false, ctx.Err().Error()
			}
		}
	}) {
		return d, nil
	}
	rec := ReconcileRecord{}
	fwdOK := step("reconcile legacy → cube", func() (bool, string) {
		reps, err := reconcile(ctx, cfg.Forward, cfg.ForwardTarget, cfg.LegacyURL, cfg.CubeURL, cfg.Settle)
		if err != nil {
			return false, err.Error()
		}
		d.Forward = reps
		rec.ForwardDifferences, rec.ForwardRows = sum(reps)
		return rec.ForwardDifferences == 0, describe(reps)
	})
	revOK := step("reconcile cube → legacy", func() (bool, string) {
		reps, err := reconcile(ctx, cfg.Reverse, cfg.ReverseTarget, cfg.CubeURL, cfg.LegacyURL, cfg.Settle)
		if err != nil {
			return false, err.Error()
		}
		d.Reverse = reps
		rec.ReverseDifferences, rec.ReverseRows = sum(reps)
		return rec.ReverseDifferences == 0, describe(reps)
	})
	if d.Forward != nil && d.Reverse != nil {
		rec.At = cfg.Now().UTC()
		data, _ := json.Marshal(rec)
		if _, err := kv.Put(ctx, ReconcileKey(cfg.Service), data); err != nil && fwdOK && revOK {
			d.Steps = append(d.Steps, Step{Name: "record reconcile", OK: false, Detail: err.Error()})
		}
	}
	return d, nil
}

func sum(reps []consumers.TableReport) (diffs int, rows int64) {
	for _, r := range reps {
		diffs += r.Differences
		rows += r.SourceRows
	}
	return diffs, rows
}

func describe(reps []consumers.TableReport) string {
	var parts []string
	for _, r := range reps {
		parts = append(parts, fmt.Sprintf("%s → %s: %d rows, %d differences", r.Source, r.Table, r.SourceRows, r.Differences))
	}
	return strings.Join(parts, "; ")
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// waitTaps waits until every live tap has a report after since that
// satisfies ok; it returns, per tap, the time of its first such report.
func waitTaps(ctx context.Context, kv jetstream.KeyValue, cfg Config, since time.Time, bound time.Duration,
	ok func(publisher.TapReport, map[string]time.Time) bool) (map[string]time.Time, bool, string) {
	deadline := time.Now().Add(bound)
	first := map[string]time.Time{}
	for {
		reps, err := publisher.TapReports(ctx, kv, cfg.Service)
		live, done := 0, 0
		var waiting []string
		if err == nil {
			now := cfg.Now()
			for _, r := range reps {
				if now.Sub(r.At) > cfg.TapStale && r.At.Before(since) {
					continue // a tap that stopped before the drill
				}
				live++
				if !r.At.Before(since) && ok(r, first) {
					if _, seen := first[r.Instance]; !seen {
						first[r.Instance] = r.At
					}
					done++
					continue
				}
				waiting = append(waiting, fmt.Sprintf("%s (at %d%%, %d at the cube, reported %s ago)", r.Instance, r.Percent, r.CubeInFlight, now.Sub(r.At).Round(time.Millisecond)))
			}
			if live > 0 && done == live {
				return first, true, fmt.Sprintf("taps: %d", live)
			}
		}
		if time.Now().After(deadline) {
			switch {
			case err != nil:
				return first, false, fmt.Sprintf("tap reports unreadable within %s: %v", bound, err)
			case live == 0:
				return first, false, fmt.Sprintf("no tap of %s reports within %s (KV %s*): without them the drill cannot prove the cube is idle; are the taps running with rollout flags?",
					cfg.Service, bound, publisher.TapReportPrefix)
			default:
				return first, false, fmt.Sprintf("not within %s: waiting for %s", bound, strings.Join(waiting, ", "))
			}
		}
		if !sleep(ctx, 5*time.Millisecond) {
			return first, false, ctx.Err().Error()
		}
	}
}
