package cdc

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestSnapshotThenStream(t *testing.T) {
	e := newEnv(t)
	e.exec(t, "CREATE TABLE items (id int PRIMARY KEY, name text, n numeric)")
	e.exec(t, "INSERT INTO items SELECT g, 'row ' || g, g * 1.5 FROM generate_series(1, 50) g")
	cfg := e.config("s1")
	reg := prometheus.NewRegistry()
	run := e.startWith(t, cfg, reg)
	waitEvents(t, e.js, "cdc.*.public.items", 50, 30*time.Second)
	e.exec(t, "INSERT INTO items VALUES (51, 'x', 'NaN')")
	e.exec(t, "BEGIN; UPDATE items SET name = 'y' WHERE id = 51; DELETE FROM items WHERE id = 1; COMMIT")
	gs := waitEvents(t, e.js, "cdc.*.public.items", 53, 30*time.Second)
	run.stop(t)
	for _, m := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"shadowcube_cdc_events_total", []string{"op", "insert"}, 1},
		{"shadowcube_cdc_events_total", []string{"op", "update"}, 1},
		{"shadowcube_cdc_events_total", []string{"op", "delete"}, 1},
		{"shadowcube_cdc_events_total", []string{"op", "snapshot"}, 50},
		{"shadowcube_cdc_snapshot_rows_total", []string{"table", "public.items"}, 50},
		{"shadowcube_cdc_snapshot_tables_done", nil, 2},
		{"shadowcube_cdc_confirmed_lsn", nil, 1},
		{"shadowcube_cdc_publish_seconds", nil, 53}, // sample count
		{"shadowcube_cdc_transactions_total", nil, 2},
		{"shadowcube_cdc_published_bytes_total", nil, 1000},
	} {
		if v := testenv.Metric(t, reg, m.name, m.labels...); v < m.min {
			t.Errorf("metric %s%q = %v, want >= %v", m.name, m.labels, v, m.min)
		}
	}
	var snaps, stream []got
	for _, g := range gs {
		if g.ev.Op == schemas.OpSnapshot {
			snaps = append(snaps, g)
		} else {
			stream = append(stream, g)
		}
	}
	if len(snaps) != 50 || len(stream) != 3 {
		t.Fatalf("got %d snapshot and %d stream events, want 50 and 3", len(snaps), len(stream))
	}
	cp := snaps[0].ev.CommitLSN
	for i, g := range snaps {
		if g.ev.CommitLSN != cp || g.ev.TxID != 0 || g.ev.TxSize != 0 {
			t.Fatalf("snapshot event %d: lsn %s tx %d size %d", i, g.ev.CommitLSN, g.ev.TxID, g.ev.TxSize)
		}
		if want := "s1:snapshot:" + cp.String() + ":"; g.id[:len(want)] != want {
			t.Fatalf("snapshot msg id %q", g.id)
		}
		if len(g.ev.Key) != 1 || g.ev.Key[0] != "id" || len(g.ev.Columns) != 3 || !g.ev.Columns[0].Key || g.ev.Columns[2].Type != "numeric" {
			t.Fatalf("snapshot event columns %+v key %v", g.ev.Columns, g.ev.Key)
		}
	}
	ins, upd, del := stream[0].ev, stream[1].ev, stream[2].ev
	if ins.Op != schemas.OpInsert || *ins.New["n"] != "NaN" || ins.TxSize != 1 || ins.Index != 0 || ins.CommitLSN <= cp {
		t.Fatalf("insert event %+v", ins)
	}
	if upd.Op != schemas.OpUpdate || del.Op != schemas.OpDelete || upd.CommitLSN != del.CommitLSN || upd.TxID != del.TxID ||
		upd.Index != 0 || del.Index != 1 || upd.TxSize != 2 || del.TxSize != 2 {
		t.Fatalf("update/delete tx fields: %+v / %+v", upd, del)
	}
	if *upd.New["name"] != "y" || *del.Old["id"] != "1" || len(del.Old) != 1 || del.New != nil {
		t.Fatalf("update new %v, delete old %v", rowString(upd.New), rowString(del.Old))
	}
	if stream[1].id != "s1:"+upd.CommitLSN.String()+":0" || stream[2].id != "s1:"+upd.CommitLSN.String()+":1" {
		t.Fatalf("msg ids %q %q", stream[1].id, stream[2].id)
	}
	if ins.CommitTime.IsZero() || ins.CommitTime.Location() != time.UTC {
		t.Fatalf("commit time %v", ins.CommitTime)
	}
}

// TestRunLeavesNoGoroutines checks Run's goroutines (ops loop, ack loop,
// context watchers, pgx connections) all end when it returns. goleak ignores
// the goroutines that existed before Run started (the shared PostgreSQL
// cluster's); the embedded NATS server, which runs in this process and keeps
// goroutines for its streams and consumers, is shut down before the check.
func TestRunLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t)
	e.exec(t, "CREATE TABLE g (id int PRIMARY KEY)")
	before := goleak.IgnoreCurrent()
	run := e.start(t, e.config("leak"))
	waitHeartbeat(t, e.js)
	if err := goleak.Find(before); err == nil || !strings.Contains(err.Error(), "shadowcube/cdc.(*") {
		t.Fatal("no goroutine of the reader found while it runs: the check below cannot fail")
	}
	e.exec(t, "INSERT INTO g SELECT generate_series(1, 100)")
	waitEvents(t, e.js, "cdc.*.public.g", 100, 30*time.Second)
	run.stop(t)
	e.js.Conn().Close()
	e.nats.Shutdown()
	testenv.VerifyNone(t, before)
}
