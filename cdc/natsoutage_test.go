package cdc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// multiLoad commits random transactions of 2 to 6 inserts, updates and
// deletes spread over tables ta, tb and tc, each ending with a row in txlog
// naming it, from several connections at once, and records them.
type multiLoad struct {
	e   *env
	mu  sync.Mutex
	txs []wantTx
}

var multiTables = []string{"ta", "tb", "tc"}

// run commits transactions on its own connection as worker w (seqs and ids
// w*1e6+n: workers touch disjoint rows) until ctx is done.
func (g *multiLoad) run(ctx context.Context, t *testing.T, w int, seed uint64) {
	conn := g.e.connect(t)
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	ids := map[string][]int{}
	next := w * 1_000_000
	for seq := w*1_000_000 + 1; ctx.Err() == nil; seq++ {
		tx := wantTx{seq: seq}
		b, err := conn.Begin(ctx)
		if err != nil {
			return
		}
		ok := true
		for range 2 + rng.IntN(5) {
			table := multiTables[rng.IntN(len(multiTables))]
			live := ids[table]
			var c wantChange
			switch k := rng.IntN(10); {
			case k < 5 || len(live) < 5:
				next++
				id, note := next, fmt.Sprintf("n%d-%d", seq, rng.IntN(1000))
				_, err = b.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2, $3)", id, seq, note)
				ids[table] = append(live, id)
				c = wantChange{schemas.OpInsert, table, fmt.Sprint(id),
					rowString(schemas.Row{"id": str(fmt.Sprint(id)), "v": str(fmt.Sprint(seq)), "note": str(note)})}
			case k < 8:
				id := live[rng.IntN(len(live))]
				_, err = b.Exec(ctx, "UPDATE "+table+" SET v = $2, note = NULL WHERE id = $1", id, seq)
				c = wantChange{schemas.OpUpdate, table, fmt.Sprint(id),
					rowString(schemas.Row{"id": str(fmt.Sprint(id)), "v": str(fmt.Sprint(seq)), "note": nil})}
			default:
				i := rng.IntN(len(live))
				id := live[i]
				_, err = b.Exec(ctx, "DELETE FROM "+table+" WHERE id = $1", id)
				ids[table] = append(live[:i:i], live[i+1:]...)
				c = wantChange{schemas.OpDelete, table, fmt.Sprint(id), rowString(schemas.Row{"id": str(fmt.Sprint(id))})}
			}
			if err != nil {
				ok = false
				break
			}
			tx.changes = append(tx.changes, c)
		}
		if ok {
			_, err = b.Exec(ctx, "INSERT INTO txlog VALUES ($1)", seq)
			ok = err == nil
		}
		// Commit and the LSN query ignore ctx: a cancel between commit and
		// record would leave a committed transaction unrecorded.
		if !ok || b.Commit(context.Background()) != nil {
			b.Rollback(context.Background())
			if ctx.Err() == nil {
				t.Errorf("load transaction %d failed: %v", seq, err)
			}
			return
		}
		tx.changes = append(tx.changes, wantChange{schemas.OpInsert, "txlog", fmt.Sprint(seq), rowString(schemas.Row{"seq": str(fmt.Sprint(seq))})})
		var hi string
		if err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&hi); err != nil {
			t.Errorf("read WAL position: %v", err)
			return
		}
		tx.hi, _ = schemas.ParseLSN(hi)
		g.mu.Lock()
		g.txs = append(g.txs, tx)
		g.mu.Unlock()
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
	}
}

func (g *multiLoad) committed() []wantTx {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]wantTx(nil), g.txs...)
}

// observation is confirmed_flush_lsn read at one moment, and the last
// stream sequence JetStream held right after (an upper bound of what it held
// when confirmed was read).
type observation struct {
	when      string
	confirmed schemas.LSN
	lastSeq   uint64
}

func lastSeq(t *testing.T, e *env) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, schemas.StreamCDC)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.LastSeq
}

// checkCovered fails unless, for every observation, every transaction of
// want that ended by its confirmed_flush_lsn (its recorded WAL position is
// at or before it) was stored whole in the stream by the observation's last
// sequence: all of Index 0..TxSize-1, TxSize the number of changes.
func checkCovered(t *testing.T, all []got, want []wantTx, obs []observation) {
	t.Helper()
	first := map[string]uint64{} // "lsn:index" -> first stream sequence
	seqLSN := map[int]schemas.LSN{}
	for _, g := range all {
		ev := g.ev
		if ev.Op == schemas.OpSnapshot || isHeartbeat(ev) {
			continue
		}
		k := fmt.Sprintf("%s:%d/%d", ev.CommitLSN, ev.Index, ev.TxSize)
		if _, ok := first[k]; !ok {
			first[k] = g.seq
		}
		if ev.Table == "txlog" {
			var seq int
			fmt.Sscan(*ev.New["seq"], &seq)
			seqLSN[seq] = ev.CommitLSN
		}
	}
	for _, o := range obs {
		checked := 0
		for _, tx := range want {
			if tx.hi > o.confirmed {
				continue
			}
			checked++
			lsn, ok := seqLSN[tx.seq]
			if !ok {
				t.Fatalf("%s: transaction %d ended by %s <= confirmed_flush_lsn %s but its last event is not in JetStream", o.when, tx.seq, tx.hi, o.confirmed)
			}
			for i := range tx.changes {
				k := fmt.Sprintf("%s:%d/%d", lsn, i, len(tx.changes))
				if seq, ok := first[k]; !ok || seq > o.lastSeq {
					t.Fatalf("%s: transaction %d (%s) ended by %s <= confirmed_flush_lsn %s but event %d/%d was not in JetStream (stored at stream sequence %d, after %d)",
						o.when, tx.seq, lsn, tx.hi, o.confirmed, i, len(tx.changes), seq, o.lastSeq)
				}
			}
		}
		t.Logf("%s: confirmed_flush_lsn %s covered %d transactions, all stored whole by stream sequence %d", o.when, o.confirmed, checked, o.lastSeq)
	}
}

// TestNATSOutageMultiTx restarts NATS (twice, then twice in quick
// succession, twice) and stops it for a few seconds while three connections
// commit multi-statement transactions over several tables:
// confirmed_flush_lsn never passes a transaction JetStream does not hold
// whole, and at the end the stream, de-duplicated by (commit LSN, index),
// holds every committed change exactly, each transaction complete, in
// (commit LSN, index) order of first appearance.
func TestNATSOutageMultiTx(t *testing.T) {
	e := newEnv(t)
	for _, table := range multiTables {
		e.exec(t, "CREATE TABLE "+table+" (id int PRIMARY KEY, v int, note text)")
	}
	e.exec(t, "CREATE TABLE txlog (seq int PRIMARY KEY)")
	const slot = "natsout"
	cfg := e.config(slot)
	cfg.PublishTimeout = 2 * time.Second
	cfg.RetryMax = 500 * time.Millisecond
	cfg.StatusInterval = 20 * time.Millisecond
	run := e.start(t, cfg)
	waitHeartbeat(t, e.js)

	gen := &multiLoad{e: e}
	ctx, stopLoad := context.WithCancel(context.Background())
	var loaders sync.WaitGroup
	seed := uint64(time.Now().UnixNano())
	t.Logf("load seed %d", seed)
	for w := 1; w <= 3; w++ {
		loaders.Go(func() { gen.run(ctx, t, w, seed) })
	}
	loadDone := make(chan struct{})
	go func() { loaders.Wait(); close(loadDone) }()
	defer func() { stopLoad(); <-loadDone }()

	rng := rand.New(rand.NewPCG(seed, 9))
	pause := func() { time.Sleep(time.Duration(200+rng.IntN(500)) * time.Millisecond) }
	var obs []observation
	observe := func(when string) {
		c := e.confirmedFlush(t, slot)
		obs = append(obs, observation{when, c, lastSeq(t, e)})
	}
	for i := range 2 {
		pause()
		e.nats.Restart(t)
		pause()
		observe(fmt.Sprintf("after restart %d", i+1))
	}
	pause()
	e.nats.Shutdown()
	time.Sleep(time.Second)
	down := e.confirmedFlush(t, slot)
	time.Sleep(2 * time.Second)
	downLater := e.confirmedFlush(t, slot)
	e.nats.Start(t)
	held := lastSeq(t, e)
	obs = append(obs, observation{"1s into the outage", down, held}, observation{"3s into the outage", downLater, held})
	// Two restarts in quick succession: the second hits the session that
	// re-publishes what the first one interrupted.
	for i := range 2 {
		pause()
		e.nats.Restart(t)
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		e.nats.Restart(t)
		pause()
		observe(fmt.Sprintf("after double restart %d", i+1))
	}
	stopLoad()
	<-loadDone

	// Wait until the source is quiet: the slot confirmed the WAL position
	// after the last commit (heartbeats keep it moving).
	want := gen.committed()
	var hi schemas.LSN
	for _, tx := range want {
		hi = max(hi, tx.hi)
	}
	deadline := time.Now().Add(60 * time.Second)
	for e.confirmedFlush(t, slot) < hi {
		if time.Now().After(deadline) {
			observe("timeout")
			checkCovered(t, readAll(t, e.js, "cdc.>"), want, obs)
			t.Fatalf("confirmed_flush_lsn did not reach %s within 60s", hi)
		}
		time.Sleep(200 * time.Millisecond)
	}
	run.stop(t)
	observe("after stop")
	checkCovered(t, readAll(t, e.js, "cdc.>"), want, obs)
	// The workers' transactions interleave: order them by the commit LSN
	// their txlog row was streamed with (compareStream then checks every
	// change of each against the stream).
	seqs := streamedSeqs(t, e)
	for _, tx := range want {
		if _, ok := seqs[tx.seq]; !ok {
			t.Fatalf("transaction %d (ended by %s) is not in the stream", tx.seq, tx.hi)
		}
	}
	sort.Slice(want, func(i, j int) bool { return seqs[want[i].seq] < seqs[want[j].seq] })
	compareStream(t, e, want, 0)
}
