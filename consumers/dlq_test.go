package consumers

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/schemas"
)

func poisonSetup(t *testing.T, policy string) (*env, *fakeCDC, *Mapping, [3]schemas.LSN) {
	e := newEnv(t)
	e.exec(e.src, `CREATE TABLE items (id bigint PRIMARY KEY, price numeric)`)
	e.exec(e.dst, `CREATE TABLE items (id bigint PRIMARY KEY, price numeric CHECK (price >= 0))`)
	m := e.loadMapping("source: {slot: s1}\ntargets:\n  - name: cube\n    database_url_env: X\n    on_poison: " + policy + "\n    tables:\n      - source: items\n        key: [id]\n")
	f := e.cdc("s1")
	var lsns [3]schemas.LSN
	for i, price := range []string{"1", "-5", "3"} {
		id := []string{"1", "2", "3"}[i]
		e.exec(e.src, `INSERT INTO items VALUES ($1, $2)`, id, price)
		r, c := f.row("items", "id = "+id)
		lsns[i] = f.tx(f.ev(schemas.OpInsert, "public.items", r, nil, c))
	}
	return e, f, m, lsns
}

func dlqEntries(t *testing.T, e *env) []DLQMessage {
	var out []DLQMessage
	if err := ListDLQ(e.ctx, e.js, func(m DLQMessage) error { out = append(out, m); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPoisonStopThenReplay: a row the target's constraint rejects lands in
// the DLQ with the reason, the stop policy applies nothing after it, and a
// replay through a fixed mapping applies it and lets the target resume.
func TestPoisonStopThenReplay(t *testing.T) {
	e, _, m, lsns := poisonSetup(t, "stop")
	s, stop := e.startSync(m, 100)
	defer stop()
	a := s.appliers[0]
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(a.met.stopped.WithLabelValues("cube")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("target did not stop at the poison transaction")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cp, err := ReadCheckpoint(e.ctx, e.dst, "cube", "s1")
	if err != nil || cp.LSN != lsns[0] {
		t.Fatalf("checkpoint = %s, %v; want %s (just before the poison)", cp.LSN, err, lsns[0])
	}
	if got := tableText(t, e.dst, "items"); strings.Join(got, " ") != "(1,1)" {
		t.Fatalf("target = %q, want only row 1 (nothing applied over the gap)", got)
	}
	entries := dlqEntries(t, e)
	if len(entries) != 1 {
		t.Fatalf("DLQ holds %d entries, want 1", len(entries))
	}
	en := entries[0].Entry.Sync
	if entries[0].Entry.Stage != "sync" || entries[0].Entry.Reason != schemas.ReasonApplyFailed || en == nil {
		t.Fatalf("DLQ entry = %+v", entries[0].Entry)
	}
	if en.Target != "cube" || en.LSN != lsns[1] || en.SQLState != "23514" || !strings.Contains(entries[0].Entry.Error, "check constraint") ||
		len(en.Events) != 1 || en.Policy != "stop" || en.Table != "public.items" {
		t.Fatalf("DLQ entry = %+v", en)
	}
	if n := testutil.ToFloat64(a.met.dlq.WithLabelValues("cube")); n != 1 {
		t.Fatalf("dlq counter = %v", n)
	}

	// fix the mapping and replay
	fixed := e.loadMapping("source: {slot: s1}\ntargets:\n  - name: cube\n    database_url_env: X\n    tables:\n      - source: items\n        key: [id]\n        columns:\n          price: abs(price)\n")
	if err := fixed.Validate(e.ctx, fixed.Targets[0], e.src, e.dst); err != nil {
		t.Fatal(err)
	}
	if _, err := ReplayDLQ(e.ctx, e.js, entries[0].Seq, fixed, e.dst); err != nil {
		t.Fatal(err)
	}
	e.waitCheckpoint("cube", "s1", lsns[2], 30*time.Second)
	if got := tableText(t, e.dst, "items"); strings.Join(got, " ") != "(1,1) (2,5) (3,3)" {
		t.Fatalf("after replay target = %q", got)
	}
	if n := len(dlqEntries(t, e)); n != 0 {
		t.Fatalf("DLQ still holds %d entries after replay", n)
	}
	if v := testutil.ToFloat64(a.met.stopped.WithLabelValues("cube")); v != 0 {
		t.Fatalf("stopped gauge = %v after resume", v)
	}
}

// TestPoisonSkip: with on_poison: skip the poison goes to the DLQ and later
// transactions are applied.
func TestPoisonSkip(t *testing.T) {
	e, _, m, lsns := poisonSetup(t, "skip")
	_, stop := e.startSync(m, 100)
	e.waitCheckpoint("cube", "s1", lsns[2], 30*time.Second)
	stop()
	if got := tableText(t, e.dst, "items"); strings.Join(got, " ") != "(1,1) (3,3)" {
		t.Fatalf("target = %q", got)
	}
	entries := dlqEntries(t, e)
	if len(entries) != 1 || entries[0].Entry.Sync.LSN != lsns[1] || entries[0].Entry.Sync.Policy != "skip" {
		t.Fatalf("DLQ = %+v", entries)
	}
	if err := DropDLQ(e.ctx, e.js, entries[0].Seq); err != nil {
		t.Fatal(err)
	}
	if n := len(dlqEntries(t, e)); n != 0 {
		t.Fatalf("DLQ holds %d after drop", n)
	}
}
