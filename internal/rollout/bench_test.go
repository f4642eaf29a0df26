package rollout

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BenchmarkR2RollbackDrill runs the demo's saju service at 25% behind a tap
// under steady traffic with two-way sync, measures the forward sync lag of
// every legacy row for 5 s (legacy commit to cube insert), then runs the rollback drill
// under the same traffic and compares its time from the flag change to
// "caught up" with the forward lag p99 of the same run.
func BenchmarkR2RollbackDrill(b *testing.B) {
	for i := 0; i < b.N; i++ {
		w := newWorld(b, worldOpts{})
		w.startAll()
		s := w.startSaju()
		if _, err := s.flags.Set(w.ctx, "saju", 25); err != nil {
			b.Fatal(err)
		}
		w.waitFor(30*time.Second, "the tap at 25%", func() bool { return s.watcher.Percent() == 25 })
		tr := s.startTraffic(5 * time.Millisecond)
		w.waitFor(2*time.Minute, "both directions applying", func() bool {
			return w.count(w.legacy, `SELECT count(*) FROM saju_records WHERE id >= 1000000000000`) >= 5
		})
		// forward lag per row, as B5 measures it: the cube stamps each row
		// when sync inserts it; legacy's created_at is its commit (now())
		w.exec(w.cube, `ALTER TABLE cube.saju_charts ADD COLUMN seen timestamptz DEFAULT clock_timestamp()`)
		from := w.count(w.cube, `SELECT coalesce(max(id), 0) FROM cube.saju_charts WHERE id < 1000000000000`)
		time.Sleep(5 * time.Second) // steady traffic: the measurement window
		rows, err := w.cube.Query(w.ctx, `SELECT extract(epoch FROM seen - created_at)::float8 * 1000 FROM cube.saju_charts
WHERE id > $1 AND id < 1000000000000 AND seen IS NOT NULL`, from)
		if err != nil {
			b.Fatal(err)
		}
		lags, err := pgx.CollectRows(rows, pgx.RowTo[float64])
		if err != nil || len(lags) < 50 {
			b.Fatalf("%d forward lag samples (%v)", len(lags), err)
		}
		sort.Float64s(lags)
		p99 := lags[len(lags)*99/100]
		b.ResetTimer()
		d, err := Rollback(w.ctx, w.config(), nil)
		b.StopTimer()
		tr.end()
		if err != nil {
			b.Fatal(err)
		}
		if !d.Clean() {
			var sb strings.Builder
			d.WriteText(&sb)
			b.Fatalf("drill not clean:\n%s", sb.String())
		}
		caught := float64(d.CaughtUp.Microseconds()) / 1000
		fmt.Printf("bench R2 rollback drill: %.0f ms flag change to caught up | limit %.0f ms (forward sync lag p99 over %d rows, p50 %.0f ms) | ratio %.2f | target <= 3 (%d requests, drill clean)\n",
			caught, p99, len(lags), lags[len(lags)/2], caught/p99, tr.ok.Load())
	}
}
