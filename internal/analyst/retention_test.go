package analyst

import (
	"testing"
	"time"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/testenv"
)

// TestRetention: pairs older than the retention are deleted in bounded
// batches (a statement trigger logs each DELETE's row count); younger
// pairs, the roll-ups and the examples stay, so the report still counts
// every pair.
func TestRetention(t *testing.T) {
	st := openStore(t)
	ctx := testenv.Context(t, 2*time.Minute)
	now := time.Now().UTC()
	seed(t, st, seedSpec{service: "saju", route: "/api/saju/chart", kind: comparator.KindSaju, at: now.Add(-20 * 24 * time.Hour), pairs: 30, open: 8})
	seed(t, st, seedSpec{service: "saju", route: "/api/saju/chart", kind: comparator.KindSaju, at: now.Add(-13 * 24 * time.Hour), pairs: 12, open: 2})
	seed(t, st, seedSpec{service: "saju", route: "/api/saju/chart", kind: comparator.KindSaju, at: now, pairs: 8})
	if _, err := st.Pool().Exec(ctx, st.SQL(`CREATE TABLE {s}.delete_log (n bigint);
		CREATE FUNCTION {s}.log_delete() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN INSERT INTO shadowcube_compare.delete_log SELECT count(*) FROM old_rows; RETURN NULL; END $$;
		CREATE TRIGGER pairs_delete_log AFTER DELETE ON {s}.pairs REFERENCING OLD TABLE AS old_rows
		FOR EACH STATEMENT EXECUTE FUNCTION {s}.log_delete();`)); err != nil {
		t.Fatal(err)
	}
	count := func(sql string) int64 {
		t.Helper()
		var n int64
		if err := st.Pool().QueryRow(ctx, st.SQL(sql)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	examples := count(`SELECT count(*) FROM {s}.examples`)
	if examples != 5 || count(`SELECT count(*) FROM {s}.pairs`) != 50 {
		t.Fatalf("before: %d examples (want 5: the signature's cap), %d pairs", examples, count(`SELECT count(*) FROM {s}.pairs`))
	}
	// Batches of 7: 30 old pairs go in 5 statements (7, 7, 7, 7, 2).
	n, err := st.PruneBefore(ctx, now.Add(-14*24*time.Hour), 7)
	if err != nil || n != 30 {
		t.Fatalf("pruned %d, %v; want 30", n, err)
	}
	if got := count(`SELECT max(n) FROM {s}.delete_log`); got != 7 {
		t.Errorf("largest DELETE removed %d pairs, want the batch of 7", got)
	}
	if got := count(`SELECT count(*) FROM {s}.delete_log`); got != 5 {
		t.Errorf("%d DELETE statements, want 5", got)
	}
	// The default retention (14 days) keeps the 13-day-old pairs.
	if n, err := st.Prune(ctx, now); err != nil || n != 0 {
		t.Fatalf("second prune: %d, %v; want nothing left to delete", n, err)
	}
	if got := count(`SELECT count(*) FROM {s}.pairs`); got != 20 {
		t.Fatalf("%d pairs left, want 20", got)
	}
	if got := count(`SELECT count(*) FROM {s}.examples`); got != examples {
		t.Fatalf("examples %d after prune, want %d kept", got, examples)
	}
	f, err := Build(ctx, st, Query{}, Options{Now: fixedNow(now)})
	if err != nil {
		t.Fatal(err)
	}
	s := f.Services[0].Routes[0].Stats
	if s.Pairs != 50 || s.Open != 10 || len(f.Services[0].Routes[0].Signatures[0].Examples) != 5 {
		t.Fatalf("report after prune: %d pairs, %d open, %d examples; want 50, 10, 5 (from roll-ups and examples)",
			s.Pairs, s.Open, len(f.Services[0].Routes[0].Signatures[0].Examples))
	}
	// A window selects by hour.
	f, err = Build(ctx, st, Query{Since: now.Add(-14 * 24 * time.Hour)}, Options{Now: fixedNow(now)})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Services[0].Routes[0].Stats.Pairs; got != 20 {
		t.Fatalf("last 14 days: %d pairs, want 20", got)
	}
}
