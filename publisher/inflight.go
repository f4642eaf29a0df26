package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// Tap reports for the rollback drill.
//
// Each tap that serves rolled-out users puts, a few times per second and at
// once when its count changes, a TapReport under
// rollout-tap.<service>.<instance> in the shared KV bucket: the flag percent
// it applies and how many requests it has in flight at the cube. The
// rollback drill (internal/rollout) reads them to prove every tap saw the
// flag at 0% and no request is still at the cube. Reports of a stopped tap
// stay behind; readers ignore reports older than a few seconds.

// TapReportPrefix starts the KV key of every tap report.
const TapReportPrefix = "rollout-tap."

// TapReportKey is the KV key of one tap instance's report.
func TapReportKey(service, instance string) string {
	return TapReportPrefix + schemas.EscapeToken(service) + "." + schemas.EscapeToken(instance)
}

// TapReport is one tap's view of its rollout.
type TapReport struct {
	Service      string    `json:"service"`
	Instance     string    `json:"instance"`
	Percent      int       `json:"percent"`        // flag percent in force at the tap
	CubeInFlight int64     `json:"cube_in_flight"` // requests being answered by the cube
	At           time.Time `json:"at"`
}

// CubeInFlight is the number of requests the tap is serving from the cube
// right now (rolled-out users, including a fallback to legacy in progress).
func (t *Tap) CubeInFlight() int64 { return t.cubeInFlight.Load() }

// ReportTap puts the tap's report every interval, within 5 ms of a change
// of its in-flight count or percent and again 20 ms after the last change,
// until ctx ends. It returns when
// ctx ends; write failures are logged and retried at the next tick.
func ReportTap(ctx context.Context, kv jetstream.KeyValue, t *Tap, service, instance string, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	key := TapReportKey(service, instance)
	last := TapReport{Percent: -1, CubeInFlight: -1}
	lastPut := time.Time{}
	var confirm time.Time // a change is reported again 20 ms later, so a reader sees a settled state soon
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r := TapReport{Service: service, Instance: instance, CubeInFlight: t.CubeInFlight()}
		if t.rollout != nil {
			r.Percent = t.rollout.Percent()
		}
		changed := r.Percent != last.Percent || r.CubeInFlight != last.CubeInFlight
		due := !confirm.IsZero() && !time.Now().Before(confirm)
		if !changed && !due && time.Since(lastPut) < interval {
			continue
		}
		if changed {
			confirm = time.Now().Add(20 * time.Millisecond)
		} else if due {
			confirm = time.Time{}
		}
		r.At = time.Now().UTC()
		data, _ := json.Marshal(r)
		if _, err := kv.Put(ctx, key, data); err != nil {
			if ctx.Err() == nil {
				log.Warn("tap report not written; retrying", "key", key, "err", err)
			}
			continue
		}
		last, lastPut = r, time.Now()
	}
}

// TapReports returns the reports of a service's taps, sorted by instance.
func TapReports(ctx context.Context, kv jetstream.KeyValue, service string) ([]TapReport, error) {
	lister, err := kv.ListKeysFiltered(ctx, TapReportPrefix+schemas.EscapeToken(service)+".>")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list tap reports of %s: %w", service, err)
	}
	var out []TapReport
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read tap report %s: %w", key, err)
		}
		var r TapReport
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return nil, fmt.Errorf("tap report %s: %w", key, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Instance, out[j].Instance) < 0 })
	return out, nil
}
