package consumers

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// txn is one unit applied atomically: a whole source transaction, or one
// snapshot row.
type txn struct {
	pos        pos
	commitTime time.Time
	events     []*schemas.ChangeEvent
	// ackMsg is the message to acknowledge (AckAll) once this unit is
	// applied: the newest consumed, when nothing older is still open or held;
	// nil otherwise (a later unit acknowledges).
	ackMsg jetstream.Msg
	broken string        // why this unit cannot be applied (decode error, incomplete or missing tx)
	raw    [][]byte      // undecodable message bodies
	rawMsg jetstream.Msg // the one undecodable message, kept whole in the dead letter

	// assembly of a stream transaction
	prev schemas.LSN // PrevLSN of its events (0: unknown, the first of a cdc session)
	have map[int]bool
	size int
	held time.Time // when it completed and began to wait for an earlier one
}

// assembler turns the message flow into whole units, in source order.
//
// Events of one transaction normally arrive together and transactions in
// commit order. After a publish lost in a leader election, cdc publishes
// the lost event again once later ones are stored, so a transaction can
// arrive after later ones. Each event names the transaction its cdc session
// published before (PrevLSN): a complete transaction whose predecessor is
// newer than the last one released is held until the predecessor has been
// released, and transactions are assembled side by side. A transaction with
// no PrevLSN (the first of a cdc session, or an older writer) is released
// as soon as it completes: everything before it was stored before it.
// A held transaction waits at most wait; then its missing predecessor
// becomes a broken unit (dead-lettered by the poison policy), never a
// silent skip.
type assembler struct {
	slot string
	last pos           // newest unit released (or the checkpoint)
	open map[pos]*txn  // stream transactions being assembled
	held []*txn        // complete, waiting for an earlier one; by position
	wait time.Duration // how long a held transaction waits
	now  func() time.Time
	log  *slog.Logger
	dup  func() // called for each duplicate event dropped
	// reordered is called for each transaction held for an earlier one
	reordered func()
	// newest is the newest message consumed.
	newest jetstream.Msg
}

func (as *assembler) clock() time.Time {
	if as.now != nil {
		return as.now()
	}
	return time.Now()
}

// add consumes one item and returns the units it completes, in order.
func (as *assembler) add(it item) []*txn {
	as.newest = it.msg
	if it.err != nil {
		t := &txn{pos: as.last, broken: "undecodable event: " + it.err.Error(), raw: [][]byte{it.msg.Data()}, rawMsg: it.msg}
		return as.acked([]*txn{t})
	}
	ev := it.ev
	if ev.Slot != as.slot {
		return nil
	}
	if ev.Op == schemas.OpSnapshot {
		p := pos{ev.CommitLSN, int64(ev.Index)}
		if !as.last.less(p) {
			as.dup()
			return nil
		}
		// a snapshot row follows everything before it
		done := as.releaseUpTo(schemas.LSN(^uint64(0)))
		as.last = p
		done = append(done, &txn{pos: p, commitTime: ev.CommitTime, events: []*schemas.ChangeEvent{ev}})
		return as.acked(done)
	}
	p := pos{ev.CommitLSN, wholeTx}
	if !as.last.less(p) || as.isHeld(p) {
		as.dup() // already applied, assembled or waiting
		return nil
	}
	t := as.open[p]
	if t == nil {
		t = &txn{pos: p, commitTime: ev.CommitTime, have: map[int]bool{}, size: ev.TxSize}
		if as.open == nil {
			as.open = map[pos]*txn{}
		}
		as.open[p] = t
	}
	if ev.Index < 0 || ev.Index >= t.size || ev.TxSize != t.size {
		as.log.Error("event outside its transaction; ignored", "lsn", p.LSN.String(), "index", ev.Index, "tx_size", ev.TxSize)
		return nil
	}
	if ev.PrevLSN != 0 {
		t.prev = ev.PrevLSN
	}
	if t.have[ev.Index] {
		as.dup()
		return nil
	}
	t.have[ev.Index] = true
	t.events = append(t.events, ev)
	if len(t.have) < t.size {
		return nil
	}
	delete(as.open, p)
	sort.Slice(t.events, func(i, j int) bool { return t.events[i].Index < t.events[j].Index })
	t.have = nil
	if t.prev == 0 {
		// first of a cdc session: everything before it is in the stream
		// before it, so whatever is still open below it is broken
		done := as.releaseUpTo(p.LSN - 1)
		as.last = p
		done = append(done, t)
		return as.acked(append(done, as.releaseReady()...))
	}
	t.held = as.clock()
	i, _ := slices.BinarySearchFunc(as.held, p, func(h *txn, p pos) int {
		if h.pos.less(p) {
			return -1
		}
		return 1
	})
	as.held = slices.Insert(as.held, i, t)
	done := as.releaseReady()
	if as.reordered != nil && as.isHeld(p) {
		as.reordered()
	}
	return as.acked(done)
}

func (as *assembler) isHeld(p pos) bool {
	for _, h := range as.held {
		if h.pos == p {
			return true
		}
	}
	return false
}

// releaseReady releases held transactions whose predecessor is released.
func (as *assembler) releaseReady() []*txn {
	var done []*txn
	for len(as.held) > 0 && as.held[0].prev <= as.last.LSN {
		done = append(done, as.releaseUpTo(as.held[0].pos.LSN)...)
	}
	return done
}

// releaseUpTo releases, in source order, every unit at or below lsn: open
// (incomplete) ones as broken, held ones after a broken unit for a
// missing predecessor when theirs was never released.
func (as *assembler) releaseUpTo(lsn schemas.LSN) []*txn {
	var below []*txn
	for p, t := range as.open {
		if p.LSN <= lsn {
			below = append(below, t)
			delete(as.open, p)
		}
	}
	for len(as.held) > 0 && as.held[0].pos.LSN <= lsn {
		below = append(below, as.held[0])
		as.held = as.held[1:]
	}
	sort.Slice(below, func(i, j int) bool { return below[i].pos.less(below[j].pos) })
	var done []*txn
	for _, t := range below {
		if !as.last.less(t.pos) {
			continue
		}
		if t.have != nil {
			// still open: never completed
			t.broken = fmt.Sprintf("incomplete source transaction: %d of %d events before later ones", len(t.have), t.size)
			t.have = nil
		} else if t.prev > as.last.LSN {
			missing := pos{t.prev, wholeTx}
			done = append(done, &txn{pos: missing, broken: fmt.Sprintf(
				"source transaction %s is missing from the CDC stream: transaction %s follows it and waited for it (from %s) in vain",
				t.prev, t.pos.LSN, t.held.UTC().Format(time.RFC3339))})
			as.last = missing
		}
		done = append(done, t)
		as.last = t.pos
	}
	return done
}

// expire releases held transactions that waited longer than the bound, and
// open ones older than the bound below a held one: their predecessor is not
// coming.
func (as *assembler) expire() []*txn {
	if len(as.held) == 0 || as.wait <= 0 {
		return nil
	}
	now := as.clock()
	var done []*txn
	for len(as.held) > 0 && now.Sub(as.held[0].held) >= as.wait {
		h := as.held[0]
		as.log.Error("a source transaction is missing from the CDC stream; giving up waiting for it",
			"missing", h.prev.String(), "waiting", h.pos.LSN.String(), "waited", now.Sub(h.held).Round(time.Millisecond))
		done = append(done, as.releaseUpTo(h.pos.LSN)...)
		done = append(done, as.releaseReady()...)
	}
	return as.acked(done)
}

// acked sets the acknowledgement of released units: the newest consumed
// message may be acknowledged (AckAll) only when nothing older is still
// open or held.
func (as *assembler) acked(done []*txn) []*txn {
	if len(done) == 0 {
		return done
	}
	if len(as.open) == 0 && len(as.held) == 0 {
		done[len(done)-1].ackMsg = as.newest
	}
	return done
}

// reset forgets partial state after a delivery gap: complete units before
// it were applied up to applied; the rest is delivered again.
func (as *assembler) reset(applied pos) {
	as.open, as.held, as.last = nil, nil, applied
}
