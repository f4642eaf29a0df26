package cdc

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestLargeTransactions streams transactions far larger than
// logical_decoding_work_mem (pgoutput streams them in progress) and than the
// spill threshold (the reader buffers them on disk): the committed one is
// published whole and in order, the rolled-back one not at all, and a
// subtransaction rolled back inside a streamed transaction is dropped.
func TestLargeTransactions(t *testing.T) {
	n := 200000
	switch {
	case testing.Short():
		n = 20000
	case raceEnabled:
		n = 50000 // still 50x logical_decoding_work_mem and the spill threshold
	}
	e := newEnv(t)
	e.exec(t, "CREATE TABLE big (id int PRIMARY KEY, pad text)")
	cfg := e.config("large")
	cfg.DecodingWorkMem = "1MB"
	cfg.SpillThreshold = 1 << 20
	run := e.start(t, cfg)
	waitHeartbeat(t, e.js)
	e.exec(t, fmt.Sprintf("INSERT INTO big SELECT g, 'committed ' || g FROM generate_series(1, %d) g", n))
	e.exec(t, fmt.Sprintf("BEGIN; INSERT INTO big SELECT g, 'rolled back' FROM generate_series(%d, %d) g; ROLLBACK", n+1, 2*n))
	e.exec(t, fmt.Sprintf(`BEGIN;
		INSERT INTO big SELECT g, 'before savepoint' FROM generate_series(%[1]d+1, %[1]d+10) g;
		SAVEPOINT s1;
		INSERT INTO big SELECT g, 'rolled back subtransaction' FROM generate_series(%[1]d+11, %[1]d+30000) g;
		ROLLBACK TO SAVEPOINT s1;
		INSERT INTO big SELECT g, 'after savepoint' FROM generate_series(%[1]d+30001, %[1]d+30010) g;
		COMMIT`, 2*n))
	e.exec(t, "INSERT INTO big VALUES (-1, 'done')")
	gs := waitEvents(t, e.js, "cdc.*.public.big", n+21, 3*time.Minute)
	run.stop(t)
	if len(gs) != n+21 {
		t.Fatalf("%d events, want %d", len(gs), n+21)
	}
	first := gs[0].ev
	for i, g := range gs[:n] {
		ev := g.ev
		if ev.Op != schemas.OpInsert || ev.CommitLSN != first.CommitLSN || ev.Index != i || ev.TxSize != n ||
			*ev.New["id"] != fmt.Sprint(i+1) {
			t.Fatalf("event %d of the big transaction: %s lsn %s index %d/%d id %s", i, ev.Op, ev.CommitLSN, ev.Index, ev.TxSize, *ev.New["id"])
		}
	}
	sub := gs[n : n+20]
	for i, g := range sub {
		ev := g.ev
		pad := *ev.New["pad"]
		if ev.TxSize != 20 || ev.Index != i || (i < 10 && pad != "before savepoint") || (i >= 10 && pad != "after savepoint") {
			t.Fatalf("subtransaction tx event %d: %q index %d/%d", i, pad, ev.Index, ev.TxSize)
		}
	}
	if *gs[n+20].ev.New["pad"] != "done" {
		t.Fatalf("last event %s", rowString(gs[n+20].ev.New))
	}
}

// TestLargeTransactionMemory runs a real `shadowcube cdc` process through
// one 200k-row transaction (decoded whole by the server this time: no
// protocol streaming) and checks every row is stored and the process's peak
// RSS stays under 150 MiB (the reader spills the transaction to disk).
func TestLargeTransactionMemory(t *testing.T) {
	n := 200000
	if testing.Short() {
		n = 50000
	}
	e := newEnv(t)
	bin := testenv.Binary(t)
	e.exec(t, "CREATE TABLE big (id int PRIMARY KEY, pad text)")
	p := startProc(t, bin, append(e.procEnv("bigmem"), "SHADOWCUBE_CDC_NO_STREAMING=true"))
	defer func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	}()
	waitSlot(t, e, "bigmem")
	e.exec(t, "INSERT INTO big SELECT g, repeat('p', 200) || g FROM generate_series(1, $1::int) g", n)
	end := walLSN(t, e)
	deadline := time.Now().Add(3 * time.Minute)
	for e.confirmedFlush(t, "bigmem") < end {
		if time.Now().After(deadline) || p.cmd.ProcessState != nil {
			t.Fatalf("transaction not acknowledged within 3 minutes:\n%s", p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rss := peakRSS(t, p.cmd.Process.Pid)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	if got := subjectCount(t, e.js, "cdc.*.public.big"); got != n {
		t.Fatalf("%d events stored, want %d", got, n)
	}
	if !strings.Contains(p.stderr.String(), "spilled=true") {
		t.Fatalf("the transaction was not spilled to disk:\n%s", p.stderr)
	}
	t.Logf("peak RSS %.1f MiB for a %d-row transaction", rss, n)
	if rss > 150 {
		t.Fatalf("peak RSS %.1f MiB, want <= 150 MiB", rss)
	}
}
