package consumers

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
	// Positive progress first: the transaction after the poison reached
	// the applier (delivered, stream sequence 3), so "not applied" below
	// cannot pass only because it had not arrived yet.
	for {
		c, err := e.js.Consumer(e.ctx, a.cfg.Stream, a.cfg.Durable)
		if err == nil {
			if info, err := c.Info(e.ctx); err == nil && info.Delivered.Stream >= 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the transaction after the poison was never delivered to the stopped target")
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// TestObsoleteDeadLetterDropped: a stop-policy dead letter whose
// transaction a restarted sync (with the cause fixed) applied no longer
// lingers in the DLQ; a skip-policy letter, whose transaction was never
// applied, stays.
func TestObsoleteDeadLetterDropped(t *testing.T) {
	e, _, m, lsns := poisonSetup(t, "stop")
	s, stop := e.startSync(m, 100)
	deadline := time.Now().Add(60 * time.Second)
	for testutil.ToFloat64(s.appliers[0].met.stopped.WithLabelValues("cube")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("target did not stop at the poison transaction")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(dlqEntries(t, e)); n != 1 {
		t.Fatalf("DLQ holds %d entries, want the poison transaction", n)
	}
	stop()
	// The cause is fixed on the target (the constraint goes), and sync is
	// restarted: it applies the transaction itself.
	e.exec(e.dst, `ALTER TABLE items DROP CONSTRAINT items_price_check`)
	_, stop2 := e.startSync(m, 100)
	defer stop2()
	e.waitCheckpoint("cube", "s1", lsns[2], 60*time.Second)
	if got := tableText(t, e.dst, "items"); strings.Join(got, " ") != "(1,1) (2,-5) (3,3)" {
		t.Fatalf("target = %q", got)
	}
	for len(dlqEntries(t, e)) != 0 {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatal("the dead letter of an applied transaction still lingers in the DLQ")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSkippedDeadLetterKept: under skip the checkpoint passes the poison
// transaction without applying it; its dead letter must stay.
func TestSkippedDeadLetterKept(t *testing.T) {
	e, _, m, lsns := poisonSetup(t, "skip")
	s, stop := e.startSync(m, 100)
	defer stop()
	e.waitCheckpoint("cube", "s1", lsns[2], 60*time.Second)
	// Positive progress first: the pruning pass runs with the DLQ depth
	// check; wait until the applier has published a depth after the skip.
	deadline := time.Now().Add(60 * time.Second)
	for testutil.ToFloat64(s.appliers[0].met.dlqDepth) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("DLQ depth gauge = %v, want 1 (the skipped letter kept)", testutil.ToFloat64(s.appliers[0].met.dlqDepth))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(dlqEntries(t, e)); n != 1 {
		t.Fatalf("DLQ holds %d entries, want the skipped transaction's letter", n)
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

// TestDLQSyncEnvelope: sync's dead letters (a poison transaction and an
// undecodable CDC message) are the one envelope on dlq.sync, the
// undecodable one with its original subject, headers and payload. The CLI
// over the same dead letters: cmd/shadowcube TestCLIDLQSyncStages.
func TestDLQSyncEnvelope(t *testing.T) {
	e, f, m, lsns := poisonSetup(t, "skip")
	garbage := nats.NewMsg(schemas.ChangeSubject("legacy", "public", "items"))
	garbage.Data = []byte("garbage")
	garbage.Header.Set("X-Trace", "t-9")
	if _, err := e.js.PublishMsg(e.ctx, garbage); err != nil {
		t.Fatal(err)
	}
	e.exec(e.src, `INSERT INTO items VALUES (4, 4)`)
	r, c := f.row("items", "id = 4")
	last := f.tx(f.ev(schemas.OpInsert, "public.items", r, nil, c))
	_, stop := e.startSync(m, 100)
	e.waitCheckpoint("cube", "s1", last, 30*time.Second)
	stop()
	entries := dlqEntries(t, e)
	if len(entries) != 2 {
		t.Fatalf("DLQ holds %d sync entries, want 2: %+v", len(entries), entries)
	}
	dlq, err := e.js.Stream(e.ctx, schemas.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	var decoded []schemas.DeadLetter
	for _, en := range entries {
		raw, err := dlq.GetMsg(e.ctx, en.Seq)
		if err != nil {
			t.Fatal(err)
		}
		d, err := schemas.DecodeDeadLetter(raw.Data)
		if err != nil || raw.Subject != "dlq.sync" || d.Stage != "sync" || d.Sync == nil || d.Sync.Target != "cube" {
			t.Fatalf("sync dead letter %d on %s is not the envelope: %v\n%s", en.Seq, raw.Subject, err, raw.Data)
		}
		decoded = append(decoded, d)
	}
	if d := decoded[0]; d.Reason != schemas.ReasonApplyFailed || d.Sync.LSN != lsns[1] || d.Sync.SQLState != "23514" || len(d.Sync.Events) != 1 {
		t.Errorf("poison transaction's dead letter = %+v %+v", d, d.Sync)
	}
	if d := decoded[1]; d.Reason != schemas.ReasonUndecodable || !d.Sync.Broken || string(d.Payload) != "garbage" ||
		d.Subject != garbage.Subject || len(d.Headers["X-Trace"]) != 1 || d.Headers["X-Trace"][0] != "t-9" {
		t.Errorf("undecodable message's dead letter = %+v %+v", d, d.Sync)
	}
}
