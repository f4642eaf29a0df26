package comparator

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestRunOf(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	for _, c := range []struct {
		name, id, msgID string
		want            Run
	}{
		{"live", "req-1", "req-1", RunLive},
		{"window", "req-1", schemas.WindowResultMsgID("req-1", at), RunWindow},
		{"no id", "req-1", "", RunUnknown},
		{"other request's window", "req-1", schemas.WindowResultMsgID("req-12", at), RunUnknown},
		{"not a time", "req-1", "req-1@soon", RunUnknown},
		{"empty time", "req-1", "req-1@", RunUnknown},
		{"foreign id", "req-1", "something-else", RunUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := RunOf(c.id, c.msgID); got != c.want {
				t.Errorf("RunOf(%q, %q) = %q, want %q", c.id, c.msgID, got, c.want)
			}
		})
	}
}

// savedPair is one outcome a property run saves.
type savedPair struct {
	id  int
	at  int // replay time, in seconds after a base
	run Run
}

// TestStoreRunsProperty: after any sequence of batches of live, window and
// unknown-run pairs (redeliveries of the same replay, live redeliveries
// with new replay times, window replays of the same requests, in one batch
// or across batches), the store holds exactly what the model keeps: a
// replay (request id, replay time) once, and at most one live pair per
// request; SaveRuns reports the new ones, and the hourly roll-ups count
// exactly the stored pairs (a skipped pair is never rolled up).
func TestStoreRunsProperty(t *testing.T) {
	s := openStore(t)
	ctx := testenv.Context(t, 5*time.Minute)
	base := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	iter := 0
	rapid.Check(t, func(rt *rapid.T) {
		iter++
		service := fmt.Sprintf("svc%d", iter) // each run its own requests and roll-up rows
		batches := rapid.SliceOfN(rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) savedPair {
			return savedPair{
				id:  rapid.IntRange(0, 3).Draw(rt, "id"),
				at:  rapid.IntRange(0, 4).Draw(rt, "at"),
				run: rapid.SampledFrom([]Run{RunLive, RunWindow, RunUnknown}).Draw(rt, "run"),
			}
		}), 1, 6), 1, 5).Draw(rt, "batches")
		type key struct{ id, at int }
		stored := map[key]bool{}
		live := map[int]bool{}
		want := 0
		for bi, batch := range batches {
			var outs []*Outcome
			var runs []Run
			wantNew := 0
			for _, p := range batch {
				k := key{p.id, p.at}
				if !stored[k] && !(p.run == RunLive && live[p.id]) {
					stored[k] = true
					if p.run == RunLive {
						live[p.id] = true
					}
					wantNew++
				}
				at := base.Add(time.Duration(p.at) * time.Second)
				outs = append(outs, &Outcome{RequestID: fmt.Sprintf("%s-req-%d", service, p.id), Service: service, Route: "/r",
					Kind: "json", Verdict: VerdictMatch, ReplayedAt: at, ComparedAt: at})
				runs = append(runs, p.run)
			}
			n, err := s.SaveRuns(ctx, outs, nil, runs)
			if err != nil {
				rt.Fatalf("batch %d: %v", bi, err)
			}
			if n != wantNew {
				rt.Fatalf("batch %d %+v: saved %d new pairs, want %d", bi, batch, n, wantNew)
			}
			want += wantNew
		}
		var pairs, liveIDs, rolled int64
		if err := s.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT request_id) FILTER (WHERE run = 'live') FROM shadowcube_compare.pairs WHERE service = $1`, service).
			Scan(&pairs, &liveIDs); err != nil {
			rt.Fatal(err)
		}
		if err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(pairs), 0) FROM shadowcube_compare.rollup_hourly WHERE service = $1`, service).Scan(&rolled); err != nil {
			rt.Fatal(err)
		}
		if pairs != int64(want) || liveIDs != int64(len(live)) || rolled != int64(want) {
			rt.Fatalf("store holds %d pairs (%d requests with a live pair), roll-ups count %d; want %d pairs, %d live, %d rolled up",
				pairs, liveIDs, rolled, want, len(live), want)
		}
	})
}
