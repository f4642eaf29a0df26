package cdc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// wantChange is one change the load generator committed.
type wantChange struct {
	op    schemas.Op
	table string
	key   string
	row   string // rowString of New (insert/update) or Old (delete)
}

type wantTx struct {
	seq     int
	hi      schemas.LSN // pg_current_wal_lsn() after the commit: the commit ends at or before it
	changes []wantChange
}

// loadGen commits random insert/update/delete transactions on table load,
// each ending with a row in txlog naming it, and records them.
type loadGen struct {
	e    *env
	mu   sync.Mutex
	txs  []wantTx
	ids  []int
	next int
	seq  int
}

func (g *loadGen) run(ctx context.Context, t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for ctx.Err() == nil {
		g.seq++
		tx := wantTx{seq: g.seq}
		b, err := g.e.db.Begin(ctx)
		if err != nil {
			return
		}
		ok := true
		for range 1 + rng.IntN(4) {
			switch k := rng.IntN(10); {
			case k < 5 || len(g.ids) < 10:
				g.next++
				id, note := g.next, fmt.Sprintf("n%d-%d", g.seq, rng.IntN(1000))
				if _, err := b.Exec(ctx, "INSERT INTO load VALUES ($1, $2, $3)", id, g.seq, note); err != nil {
					ok = false
					break
				}
				g.ids = append(g.ids, id)
				tx.changes = append(tx.changes, wantChange{schemas.OpInsert, "load", fmt.Sprint(id),
					rowString(schemas.Row{"id": str(fmt.Sprint(id)), "v": str(fmt.Sprint(g.seq)), "note": str(note)})})
			case k < 8:
				id := g.ids[rng.IntN(len(g.ids))]
				if _, err := b.Exec(ctx, "UPDATE load SET v = $2, note = NULL WHERE id = $1", id, g.seq); err != nil {
					ok = false
					break
				}
				tx.changes = append(tx.changes, wantChange{schemas.OpUpdate, "load", fmt.Sprint(id),
					rowString(schemas.Row{"id": str(fmt.Sprint(id)), "v": str(fmt.Sprint(g.seq)), "note": nil})})
			default:
				i := rng.IntN(len(g.ids))
				id := g.ids[i]
				if _, err := b.Exec(ctx, "DELETE FROM load WHERE id = $1", id); err != nil {
					ok = false
					break
				}
				g.ids = append(g.ids[:i], g.ids[i+1:]...)
				tx.changes = append(tx.changes, wantChange{schemas.OpDelete, "load", fmt.Sprint(id), rowString(schemas.Row{"id": str(fmt.Sprint(id))})})
			}
		}
		if ok {
			_, err = b.Exec(ctx, "INSERT INTO txlog VALUES ($1)", g.seq)
			ok = err == nil
		}
		// Commit and the LSN query ignore ctx: a cancel between commit and
		// record would leave a committed transaction unrecorded.
		if !ok || b.Commit(context.Background()) != nil {
			b.Rollback(context.Background())
			if ctx.Err() == nil {
				t.Errorf("load transaction %d failed", g.seq)
			}
			return
		}
		tx.changes = append(tx.changes, wantChange{schemas.OpInsert, "txlog", fmt.Sprint(g.seq), rowString(schemas.Row{"seq": str(fmt.Sprint(g.seq))})})
		var hi string
		if err := g.e.db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&hi); err != nil {
			t.Errorf("read WAL position: %v", err)
			return
		}
		tx.hi, _ = schemas.ParseLSN(hi)
		g.mu.Lock()
		g.txs = append(g.txs, tx)
		g.mu.Unlock()
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
	}
}

func (g *loadGen) committed() []wantTx {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]wantTx(nil), g.txs...)
}

type proc struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
}

func startProc(t testing.TB, bin string, env []string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "cdc")
	cmd.Env = append(os.Environ(), env...)
	buf := &testenv.Buffer{}
	cmd.Stderr = buf
	cmd.Stdout = buf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start shadowcube cdc: %v", err)
	}
	return &proc{cmd: cmd, stderr: buf}
}

// waitStreamedAfter waits until the stream holds a load transaction
// committed after the call: proof that the reader running now streams
// changes (not merely started or connected), so a fault injected next hits a
// streaming reader.
func waitStreamedAfter(t testing.TB, e *env, gen *loadGen, d time.Duration) {
	t.Helper()
	floor := 0
	if c := gen.committed(); len(c) > 0 {
		floor = c[len(c)-1].seq
	}
	deadline := time.Now().Add(d)
	for {
		for seq := range streamedSeqs(t, e) {
			if seq > floor {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no transaction committed after %d streamed within %s", floor, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) procEnv(slot string) []string {
	return []string{"SHADOWCUBE_SOURCE_DATABASE_URL=" + e.url, "SHADOWCUBE_NATS_URL=" + e.nats.URL,
		"SHADOWCUBE_CDC_SLOT=" + slot, "SHADOWCUBE_CDC_PUBLICATION=pub_" + slot, "SHADOWCUBE_METRICS_ADDR=",
		"SHADOWCUBE_CDC_HEARTBEAT=200ms", "SHADOWCUBE_CDC_STATUS_INTERVAL=50ms", "SHADOWCUBE_CDC_SLOT_CHECK=1s",
		"SHADOWCUBE_LOG_LEVEL=info"}
}

func (e *env) confirmedFlush(t testing.TB, slot string) schemas.LSN {
	t.Helper()
	var s *string
	conn := testenv.Connect(t, e.url)
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&s); err != nil {
		t.Fatalf("read confirmed_flush_lsn: %v", err)
	}
	l, _ := schemas.ParseLSN(*s)
	return l
}

// streamedSeqs returns the txlog seqs stored in the stream with their commit LSN.
func streamedSeqs(t testing.TB, e *env) map[int]schemas.LSN {
	out := map[int]schemas.LSN{}
	for _, g := range readAll(t, e.js, "cdc.*.public.txlog") {
		var seq int
		fmt.Sscan(*g.ev.New["seq"], &seq)
		out[seq] = g.ev.CommitLSN
	}
	return out
}

// TestCrashKill9 kills a real `shadowcube cdc` process with SIGKILL at random
// points under a steady insert/update/delete load, five times, restarting it
// each time. Every kill lands on a process that streamed: before each kill
// the test waits until a transaction committed after the previous kill is
// in JetStream, and it counts those rounds (all five must be). After each
// kill, every transaction that ended before the slot's
// confirmed_flush_lsn must be in JetStream; at the end the stream,
// de-duplicated by (commit LSN, index), must equal the committed changes
// exactly and in order.
func TestCrashKill9(t *testing.T) {
	e := newEnv(t)
	bin := testenv.Binary(t)
	e.exec(t, "CREATE TABLE load (id int PRIMARY KEY, v int, note text)")
	e.exec(t, "CREATE TABLE txlog (seq int PRIMARY KEY)")
	e.exec(t, "INSERT INTO load SELECT g, 0, 'initial' FROM generate_series(1, 100) g")
	gen := &loadGen{e: e, next: 100}
	for i := 1; i <= 100; i++ {
		gen.ids = append(gen.ids, i)
	}
	const slot = "crash"
	p := startProc(t, bin, e.procEnv(slot))
	defer func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("last process output:\n%s", p.stderr.String())
		}
	}()
	waitEvents(t, e.js, "cdc.*.public.load", 100, 60*time.Second)

	ctx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); gen.run(ctx, t) }()
	defer func() { stopLoad(); <-loadDone }()

	rng := rand.New(rand.NewPCG(3, 4))
	streamedRounds := 0
	for round := 1; round <= 5; round++ {
		// The process of this round (new after a kill) streams first.
		waitStreamedAfter(t, e, gen, 90*time.Second)
		streamedRounds++
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		p.cmd.Wait()
		confirmed := e.confirmedFlush(t, slot)
		seqs := streamedSeqs(t, e)
		checked := 0
		for _, tx := range gen.committed() {
			if tx.hi <= confirmed {
				checked++
				if _, ok := seqs[tx.seq]; !ok {
					t.Fatalf("round %d: transaction %d ended by %s <= confirmed_flush_lsn %s but is not in JetStream", round, tx.seq, tx.hi, confirmed)
				}
			}
		}
		t.Logf("round %d: killed a streaming process; confirmed_flush_lsn %s covers %d transactions, all stored; %d in stream", round, confirmed, checked, len(seqs))
		p = startProc(t, bin, e.procEnv(slot))
	}
	if streamedRounds != 5 {
		t.Fatalf("%d of 5 kills hit a process that streamed", streamedRounds)
	}
	time.Sleep(500 * time.Millisecond)
	stopLoad()
	<-loadDone
	want := gen.committed()
	last := want[len(want)-1].seq
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, ok := streamedSeqs(t, e)[last]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last transaction %d not streamed within 90s", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, p.stderr.String())
	}
	compareStream(t, e, want, 100)
}

// compareStream checks the stream, de-duplicated by (commit LSN, index), is
// exactly the snapshot of nSnap initial rows followed by the transactions of
// want in commit order, and that the stream holds them in that order.
func compareStream(t *testing.T, e *env, want []wantTx, nSnap int) {
	t.Helper()
	all := readAll(t, e.js, "cdc.>")
	type key struct {
		lsn schemas.LSN
		idx int
	}
	seen := map[key]bool{}
	var snaps int
	var evs []*schemas.ChangeEvent
	dups := 0
	var prev key
	for _, g := range all {
		ev := g.ev
		if isHeartbeat(ev) {
			continue
		}
		if ev.Op == schemas.OpSnapshot {
			snaps++
			continue
		}
		k := key{ev.CommitLSN, ev.Index}
		if seen[k] {
			dups++
			continue
		}
		seen[k] = true
		if k.lsn < prev.lsn || (k.lsn == prev.lsn && k.idx < prev.idx) {
			t.Errorf("stream order: %s:%d stored after %s:%d", k.lsn, k.idx, prev.lsn, prev.idx)
		}
		prev = k
		evs = append(evs, ev)
	}
	if snaps != nSnap {
		t.Errorf("%d snapshot events, want %d", snaps, nSnap)
	}
	sort.SliceStable(evs, func(i, j int) bool {
		if evs[i].CommitLSN != evs[j].CommitLSN {
			return evs[i].CommitLSN < evs[j].CommitLSN
		}
		return evs[i].Index < evs[j].Index
	})
	i := 0
	for _, tx := range want {
		if i+len(tx.changes) > len(evs) {
			t.Fatalf("stream ends at transaction %d of %d (%d events)", tx.seq, len(want), len(evs))
		}
		lsn := evs[i].CommitLSN
		for j, c := range tx.changes {
			ev := evs[i+j]
			row := ev.New
			if ev.Op == schemas.OpDelete {
				row = ev.Old
			}
			if ev.CommitLSN != lsn || ev.Index != j || ev.TxSize != len(tx.changes) || ev.Op != c.op || ev.Table != c.table || rowString(row) != c.row {
				t.Fatalf("transaction %d change %d: got %s %s %s at %s:%d/%d, want %s %s %s", tx.seq, j,
					ev.Op, ev.Table, rowString(row), ev.CommitLSN, ev.Index, ev.TxSize, c.op, c.table, c.row)
			}
		}
		i += len(tx.changes)
	}
	if i != len(evs) {
		t.Fatalf("stream holds %d events beyond the %d committed transactions", len(evs)-i, len(want))
	}
	t.Logf("stream equals the %d committed transactions (%d events, %d duplicates removed)", len(want), len(evs), dups)
}
