package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/heal7/shadowcube/publisher"
)

// StatusReport is the operator's one screen of a service's rollout.
type StatusReport struct {
	Service    string
	At         time.Time
	Flag       publisher.Flag
	FlagSet    bool // false: no flag (0%)
	Percent    int  // in force now
	Forward    Direction
	Reverse    Direction
	Taps       []publisher.TapReport // live taps
	StaleTaps  int
	DLQDepth   int64 // -1: no DLQ stream
	Reconcile  *ReconcileRecord
	Gate       string // verdict, or "not available (...)"
	Problems   []string
	Conflicts  map[string]int64 // winner -> count, both databases
	ConflictOK bool             // the conflict tables could be read
}

// Direction is one sync direction's state.
type Direction struct {
	Target    string
	Slot      string
	Watermark time.Time // source commit time of the last applied transaction (zero: none yet)
	Lag       time.Duration
}

// Status reads the service's rollout state. Parts that cannot be read are
// listed in Problems; an error means nothing could be read.
func Status(ctx context.Context, cfg Config) (*StatusReport, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	kv, err := cfg.kv(ctx)
	if err != nil {
		return nil, err
	}
	now := cfg.Now()
	r := &StatusReport{Service: cfg.Service, At: now, DLQDepth: -1, Conflicts: map[string]int64{}}
	flags, err := publisher.OpenFlags(ctx, cfg.JS)
	if err != nil {
		return nil, err
	}
	fl, err := flags.Get(ctx, cfg.Service)
	switch {
	case errors.Is(err, publisher.ErrNoFlag):
	case err != nil:
		r.Problems = append(r.Problems, err.Error())
	default:
		r.Flag, r.FlagSet = fl, true
		r.Percent = fl.Effective(now)
	}
	for _, d := range []struct {
		dir    *Direction
		target string
		slot   string
	}{{&r.Forward, cfg.ForwardTarget, cfg.Forward.Source.Slot}, {&r.Reverse, cfg.ReverseTarget, cfg.Reverse.Source.Slot}} {
		d.dir.Target, d.dir.Slot = d.target, d.slot
		wm, err := watermark(ctx, kv, d.target)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			continue
		}
		if !wm.CommitTime.IsZero() {
			d.dir.Watermark = wm.CommitTime
			d.dir.Lag = max(0, now.Sub(wm.CommitTime))
		}
	}
	taps, err := publisher.TapReports(ctx, kv, cfg.Service)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	for _, t := range taps {
		if now.Sub(t.At) > cfg.TapStale {
			r.StaleTaps++
			continue
		}
		r.Taps = append(r.Taps, t)
	}
	if r.DLQDepth, err = dlqDepth(ctx, cfg.JS); err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	if r.Reconcile, err = readReconcile(ctx, kv, cfg.Service); err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	r.ConflictOK = true
	for _, url := range []string{cfg.LegacyURL, cfg.CubeURL} {
		c, err := conflictCounts(ctx, url)
		if err != nil {
			r.ConflictOK = false
			r.Problems = append(r.Problems, fmt.Sprintf("read conflicts: %v", err))
			continue
		}
		for w, n := range c {
			r.Conflicts[w] += n
		}
	}
	r.Gate = "not available (no gate configured in this build)"
	if cfg.Gate != nil {
		if v, err := cfg.Gate(ctx, cfg.Service); err != nil {
			r.Gate = "not available: " + err.Error()
		} else {
			r.Gate = v
		}
	}
	return r, nil
}

// WriteText prints the report.
func (r *StatusReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "rollout of %s at %s\n", r.Service, r.At.UTC().Format(time.RFC3339))
	switch {
	case !r.FlagSet:
		b.WriteString("flag:       no flag (0%: every user on legacy)\n")
	case r.Flag.Ramp != nil:
		fmt.Fprintf(&b, "flag:       %d%% now; ramp %d%% → %d%% by %d every %s since %s\n", r.Percent, r.Flag.Ramp.From, r.Flag.Ramp.To,
			r.Flag.Ramp.Step, r.Flag.Ramp.Every, r.Flag.Ramp.Start.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(&b, "flag:       %d%% (set %s)\n", r.Percent, r.Flag.UpdatedAt.UTC().Format(time.RFC3339))
	}
	for _, d := range []struct {
		name string
		d    Direction
	}{{"forward", r.Forward}, {"reverse", r.Reverse}} {
		if d.d.Watermark.IsZero() {
			fmt.Fprintf(&b, "%-11s target %s (slot %s): no watermark in KV yet (sync not started, or nothing applied)\n", d.name+":", d.d.Target, d.d.Slot)
			continue
		}
		fmt.Fprintf(&b, "%-11s target %s (slot %s): lag %s\n", d.name+":", d.d.Target, d.d.Slot, d.d.Lag.Round(time.Millisecond))
	}
	var inflight int64
	for _, t := range r.Taps {
		inflight += t.CubeInFlight
	}
	fmt.Fprintf(&b, "taps:       %d live (%d stale reports), %d requests at the cube\n", len(r.Taps), r.StaleTaps, inflight)
	if r.ConflictOK {
		winners := make([]string, 0, len(r.Conflicts))
		total := int64(0)
		for w, n := range r.Conflicts {
			winners = append(winners, fmt.Sprintf("%s won %d", w, n))
			total += n
		}
		sort.Strings(winners)
		if total == 0 {
			b.WriteString("conflicts:  none\n")
		} else {
			fmt.Fprintf(&b, "conflicts:  %d (%s)\n", total, strings.Join(winners, ", "))
		}
	}
	if r.DLQDepth < 0 {
		b.WriteString("dlq:        no DLQ stream\n")
	} else {
		fmt.Fprintf(&b, "dlq:        %d messages\n", r.DLQDepth)
	}
	if r.Reconcile == nil {
		b.WriteString("reconcile:  none recorded (a rollback drill records its reconciles)\n")
	} else {
		fmt.Fprintf(&b, "reconcile:  %s: forward %d differences in %d rows, reverse %d differences in %d rows\n",
			r.Reconcile.At.UTC().Format(time.RFC3339), r.Reconcile.ForwardDifferences, r.Reconcile.ForwardRows,
			r.Reconcile.ReverseDifferences, r.Reconcile.ReverseRows)
	}
	fmt.Fprintf(&b, "gate:       %s\n", r.Gate)
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "problem:    %s\n", p)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
