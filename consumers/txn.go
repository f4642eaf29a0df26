package consumers

import (
	"fmt"
	"log/slog"
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
	ackMsg     jetstream.Msg // newest message consumed when this unit completed
	broken     string        // why this unit cannot be applied (decode error, incomplete tx)
	raw        [][]byte      // undecodable message bodies
}

// assembler turns the ordered message flow into whole units.
type assembler struct {
	slot string
	last pos  // newest unit completed (or the checkpoint)
	cur  *txn // stream transaction being assembled
	have map[int]bool
	size int
	log  *slog.Logger
	dup  func() // called for each duplicate event dropped
}

// add consumes one item and returns the units it completes.
func (as *assembler) add(it item) []*txn {
	if it.err != nil {
		var done []*txn
		if as.cur != nil {
			done = append(done, as.breakCur())
		}
		return append(done, &txn{pos: as.last, ackMsg: it.msg, broken: "undecodable event: " + it.err.Error(), raw: [][]byte{it.msg.Data()}})
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
		var done []*txn
		if as.cur != nil {
			done = append(done, as.breakCur())
		}
		as.last = p
		return append(done, &txn{pos: p, commitTime: ev.CommitTime, events: []*schemas.ChangeEvent{ev}, ackMsg: it.msg})
	}
	p := pos{ev.CommitLSN, wholeTx}
	if !as.last.less(p) {
		as.dup() // already applied or assembled
		return nil
	}
	var done []*txn
	if as.cur != nil && as.cur.pos != p {
		done = append(done, as.breakCur())
	}
	if as.cur == nil {
		as.cur = &txn{pos: p, commitTime: ev.CommitTime}
		as.have = map[int]bool{}
		as.size = ev.TxSize
	}
	if ev.Index < 0 || ev.Index >= as.size || ev.TxSize != as.size {
		as.log.Error("event outside its transaction; ignored", "lsn", p.LSN.String(), "index", ev.Index, "tx_size", ev.TxSize)
		return done
	}
	if !as.have[ev.Index] {
		as.have[ev.Index] = true
		as.cur.events = append(as.cur.events, ev)
	}
	as.cur.ackMsg = it.msg
	if len(as.have) == as.size {
		t := as.cur
		sort.Slice(t.events, func(i, j int) bool { return t.events[i].Index < t.events[j].Index })
		as.cur, as.have = nil, nil
		as.last = p
		done = append(done, t)
	}
	return done
}

func (as *assembler) breakCur() *txn {
	t := as.cur
	t.broken = fmt.Sprintf("incomplete source transaction: %d of %d events before the next one", len(as.have), as.size)
	as.cur, as.have = nil, nil
	as.last = t.pos
	return t
}
