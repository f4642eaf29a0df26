package consumers

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/schemas"
)

// TestSyncAppliesALateTransactionInSourceOrder publishes the stream a cdc
// publish lost in a NATS leader election leaves behind: transaction T2's
// second event is stored only after T3 and T4 (the next cdc session
// published it again, with no prev_lsn as the first of its session), and T3
// names T2 as its predecessor. Sync must apply T2, T3 and T4 in source
// order: T3 updates a row T2 inserts, T4 deletes one. Before prev_lsn, T2
// was incomplete when T3 arrived (dead-lettered or stopped) and its late
// event was skipped as passed.
func TestSyncAppliesALateTransactionInSourceOrder(t *testing.T) {
	e := newEnv(t)
	e.exec(e.src, itemsDDL)
	e.exec(e.dst, itemsDDL)
	m := e.loadMapping(identityMapping)
	f := e.cdc("s1")
	e.exec(e.src, `INSERT INTO items (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three')`)
	row := func(id int) (schemas.Row, []schemas.Column) { return f.row("public.items", fmt.Sprintf("id = %d", id)) }
	r1, c := row(1)
	r2, _ := row(2)
	r3, _ := row(3)
	r2b := schemas.Row{}
	for k, v := range r2 {
		r2b[k] = v
	}
	b := "two-updated"
	r2b["name"] = &b

	type tx struct {
		lsn, prev schemas.LSN
		evs       []schemas.ChangeEvent
	}
	base := schemas.LSN(0x2000000)
	txs := []tx{
		{base + 0x100, 0, []schemas.ChangeEvent{f.ev(schemas.OpInsert, "public.items", r1, nil, c)}},
		{base + 0x200, base + 0x100, []schemas.ChangeEvent{f.ev(schemas.OpInsert, "public.items", r2, nil, c), f.ev(schemas.OpInsert, "public.items", r3, nil, c)}},
		{base + 0x300, base + 0x200, []schemas.ChangeEvent{f.ev(schemas.OpUpdate, "public.items", r2b, nil, c)}},
		{base + 0x400, base + 0x300, []schemas.ChangeEvent{f.ev(schemas.OpDelete, "public.items", nil, schemas.Row{"id": r3["id"]}, c)}},
	}
	now := time.Now().UTC()
	pub := func(ti, i int, prev schemas.LSN) {
		x := txs[ti]
		ev := x.evs[i]
		ev.V, ev.Slot, ev.DB = schemas.Version, "s1", "legacy"
		ev.CommitLSN, ev.TxID, ev.Index, ev.TxSize, ev.CommitTime, ev.PrevLSN = x.lsn, uint32(x.lsn), i, len(x.evs), now, prev
		f.publish(&ev, fmt.Sprintf("s1:%s:%d", x.lsn, i))
	}
	pub(0, 0, txs[0].prev)
	pub(1, 0, txs[1].prev) // T2's first event; its second is lost here
	pub(2, 0, txs[2].prev)
	pub(3, 0, txs[3].prev)
	pub(1, 1, 0) // the next session's first transaction: no prev_lsn

	s, _ := e.startSync(m, 100)
	e.waitCheckpoint("cube", "s1", txs[3].lsn, time.Minute)
	got := tableText(t, e.dst, "items")
	// the source as the four transactions leave it
	e.exec(e.src, `UPDATE items SET name = 'two-updated' WHERE id = 2`)
	e.exec(e.src, `DELETE FROM items WHERE id = 3`)
	if want := tableText(t, e.src, "items"); !slices.Equal(got, want) {
		t.Fatalf("target after the late transaction:\n got %q\nwant %q", got, want)
	}
	// the fault hit: T3 waited for T2
	if n := testutil.ToFloat64(s.Appliers()[0].met.reordered.WithLabelValues("cube")); n < 1 {
		t.Fatalf("no transaction was held for an earlier one (%v): the stream was not out of order", n)
	}
}
