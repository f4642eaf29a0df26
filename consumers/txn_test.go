package consumers

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"pgregory.net/rapid"

	"github.com/heal7/shadowcube/schemas"
)

// streamMsg stands for one message of the CDC stream at a stream sequence;
// the assembler only keeps it to acknowledge it later.
type streamMsg struct {
	jetstream.Msg
	seq int
}

func (m *streamMsg) Data() []byte         { return nil }
func (m *streamMsg) Subject() string      { return "cdc.test" }
func (m *streamMsg) Headers() nats.Header { return nil }
func (m *streamMsg) String() string       { return fmt.Sprint(m.seq) }
func (m *streamMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: uint64(m.seq)}}, nil
}

type fed struct {
	ev  *schemas.ChangeEvent
	msg *streamMsg
}

func ev(lsn, prev schemas.LSN, i, n int) *schemas.ChangeEvent {
	return &schemas.ChangeEvent{Slot: "s", Op: schemas.OpInsert, CommitLSN: lsn, PrevLSN: prev, Index: i, TxSize: n}
}

func newTestAssembler(now *time.Time) *assembler {
	return &assembler{slot: "s", log: slog.New(slog.DiscardHandler), dup: func() {}, wait: time.Minute,
		now: func() time.Time { return *now }}
}

// TestAssemblerWaitsForALateTransaction: the stream order a lost publish
// leaves (A's second event stored again after B, whose predecessor is A)
// is applied in source order, and nothing is acknowledged past A before A is
// released.
func TestAssemblerWaitsForALateTransaction(t *testing.T) {
	now := time.Unix(1000, 0)
	as := newTestAssembler(&now)
	stream := []*schemas.ChangeEvent{
		ev(10, 0, 0, 1),  // Z, first of a session
		ev(20, 10, 0, 2), // A0
		ev(30, 20, 0, 1), // B (after A)
		ev(40, 30, 0, 1), // C
		ev(20, 0, 1, 2),  // A1, published again by the next session (first of it: no prev)
		ev(30, 0, 0, 1),  // B again (duplicate of the stored one)
		ev(50, 40, 0, 1), // D
	}
	var order []string
	for i, e := range stream {
		msg := &streamMsg{seq: i + 1}
		for _, u := range as.add(item{msg: msg, ev: e}) {
			if u.broken != "" {
				t.Fatalf("broken unit at %s: %s", u.pos, u.broken)
			}
			ack := "-"
			if u.ackMsg != nil {
				ack = u.ackMsg.(*streamMsg).String()
			}
			order = append(order, fmt.Sprintf("%d@%s", u.pos.LSN, ack))
		}
	}
	// Z acked at 1; A released only by A1 (seq 5), then B and C, acked at 5;
	// D at 7
	if got, want := strings.Join(order, " "), "10@1 20@- 30@- 40@5 50@7"; got != want {
		t.Fatalf("released %q, want %q", got, want)
	}
}

// TestAssemblerGivesUpOnAMissingTransaction: a predecessor that never comes
// becomes a broken unit after the wait (dead-lettered by policy), then the
// waiting transaction is applied; nothing before the wait ends.
func TestAssemblerGivesUpOnAMissingTransaction(t *testing.T) {
	now := time.Unix(1000, 0)
	as := newTestAssembler(&now)
	if u := as.add(item{msg: &streamMsg{seq: 1}, ev: ev(10, 0, 0, 1)}); len(u) != 1 {
		t.Fatalf("first transaction: %d units", len(u))
	}
	if u := as.add(item{msg: &streamMsg{seq: 2}, ev: ev(30, 20, 0, 1)}); len(u) != 0 {
		t.Fatalf("transaction after a missing one released at once: %d units", len(u))
	}
	now = now.Add(59 * time.Second)
	if u := as.expire(); len(u) != 0 {
		t.Fatalf("released before the wait ended: %d units", len(u))
	}
	now = now.Add(2 * time.Second)
	u := as.expire()
	if len(u) != 2 || u[0].broken == "" || u[0].pos.LSN != 20 || u[1].broken != "" || u[1].pos.LSN != 30 {
		t.Fatalf("after the wait: %+v", u)
	}
	if !strings.Contains(u[0].broken, "missing") || u[1].ackMsg == nil {
		t.Fatalf("missing unit %q, ack %v", u[0].broken, u[1].ackMsg)
	}
}

// TestAssemblerReordersLikeLostPublishes is a property test over the
// streams cdc can leave: sessions publish transactions in source order with
// PrevLSN chains; some publishes are lost (and later ones in the window
// stored anyway); the next session starts from the durable position (the
// end of the last transaction stored whole, in order) and publishes again,
// JetStream dropping duplicates. Fed the stream (with redeliveries), the
// assembler releases every transaction once, whole, in source order, never
// a broken unit, and acknowledges no message before every transaction with
// an event at or before it is released.
func TestAssemblerReordersLikeLostPublishes(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ntx := rapid.IntRange(1, 30).Draw(rt, "txs")
		sizes := make([]int, ntx)
		for i := range sizes {
			sizes[i] = rapid.IntRange(1, 4).Draw(rt, "size")
		}
		lsn := func(i int) schemas.LSN { return schemas.LSN(100 * (i + 1)) }
		type key struct{ tx, idx int }
		var stream []key
		stored := map[key]bool{}
		prevOf := map[key]schemas.LSN{} // PrevLSN of the stored copy, as its session set it
		durable := 0                    // transactions before this one are stored whole
		for session := 0; durable < ntx; session++ {
			if session > 20 {
				rt.Fatalf("no progress")
			}
			lossy := session < 6 && rapid.Bool().Draw(rt, "lossy")
			lostAny := false
			start := durable
			for tx := durable; tx < ntx; tx++ {
				for i := range sizes[tx] {
					k := key{tx, i}
					lost := lossy && rapid.IntRange(0, 9).Draw(rt, "loss") == 0
					if lost {
						lostAny = true
						continue
					}
					if !stored[k] {
						stored[k] = true
						stream = append(stream, k)
						if tx > start {
							prevOf[k] = lsn(tx - 1)
						}
					}
				}
				// the session's publisher sees the failure some events later
				if lostAny && rapid.IntRange(0, 3).Draw(rt, "notice") == 0 {
					break
				}
			}
			for durable < ntx {
				whole := true
				for i := range sizes[durable] {
					whole = whole && stored[key{durable, i}]
				}
				if !whole {
					break
				}
				durable++
			}
		}
		now := time.Unix(1000, 0)
		as := newTestAssembler(&now)
		released := 0
		seq := 0
		var feed []fed
		for _, k := range stream {
			seq++
			e := ev(lsn(k.tx), prevOf[k], k.idx, sizes[k.tx])
			feed = append(feed, fed{e, &streamMsg{seq: seq}})
		}
		for i, f := range feed {
			units := as.add(item{msg: f.msg, ev: f.ev})
			if i > 0 && rapid.IntRange(0, 9).Draw(rt, "redeliver") == 0 {
				// a redelivery of an earlier message: a duplicate
				r := feed[rapid.IntRange(0, i).Draw(rt, "which")]
				units = append(units, as.add(item{msg: f.msg, ev: r.ev})...)
			}
			for _, u := range units {
				if u.broken != "" {
					rt.Fatalf("broken unit %s: %s", u.pos, u.broken)
				}
				if want := lsn(released); u.pos.LSN != want {
					rt.Fatalf("released %s, want %s", u.pos.LSN, want)
				}
				if len(u.events) != sizes[released] {
					rt.Fatalf("transaction %s with %d of %d events", u.pos.LSN, len(u.events), sizes[released])
				}
				released++
				if u.ackMsg != nil {
					s := u.ackMsg.(*streamMsg).seq
					for tx := released; tx < ntx; tx++ {
						for _, g := range feed[:s] {
							if g.ev.CommitLSN == lsn(tx) {
								rt.Fatalf("ack at %d passes transaction %s, not released", s, lsn(tx))
							}
						}
					}
				}
			}
		}
		if released != ntx {
			rt.Fatalf("released %d of %d transactions (held %d, open %d)", released, ntx, len(as.held), len(as.open))
		}
	})
}
