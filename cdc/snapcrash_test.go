package cdc

import (
	"syscall"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestCrashMidSnapshot kills a `shadowcube cdc` process with SIGKILL while it
// copies a large table, changes the table while it is down, and restarts
// it: the reader must drop the half-used slot and copy everything again at a
// new consistent point (never resume a half snapshot with a later slot
// position), then stream the changes after it.
func TestCrashMidSnapshot(t *testing.T) {
	rows := 80000
	e := newEnv(t)
	bin := testenv.Binary(t)
	e.exec(t, "CREATE TABLE snap (id int PRIMARY KEY, v text)")
	e.exec(t, "INSERT INTO snap SELECT g, 'v' || g FROM generate_series(1, $1::int) g", rows)
	p := startProc(t, bin, e.procEnv("midsnap"))
	defer func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for subjectCount(t, e.js, "cdc.*.public.snap") < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot did not start within 60s:\n%s", p.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	half := subjectCount(t, e.js, "cdc.*.public.snap")
	if half >= rows {
		t.Fatalf("the snapshot finished (%d rows) before the kill; the test needs a bigger table", half)
	}
	t.Logf("killed after %d of %d snapshot rows", half, rows)
	e.exec(t, "UPDATE snap SET v = 'changed while down' WHERE id = 1")
	e.exec(t, "INSERT INTO snap VALUES (0, 'inserted while down')")

	p = startProc(t, bin, e.procEnv("midsnap"))
	waitEvents(t, e.js, "cdc.*.public.snap", half+rows+1, 120*time.Second)
	e.exec(t, "DELETE FROM snap WHERE id = 2")
	gs := waitEvents(t, e.js, "cdc.*.public.snap", half+rows+2, 60*time.Second)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()

	cp1, cp2 := gs[0].ev.CommitLSN, gs[len(gs)-2].ev.CommitLSN
	if cp2 <= cp1 {
		t.Fatalf("second snapshot at %s, first at %s: want a new consistent point", cp2, cp1)
	}
	ids := map[string]string{}
	var after []*schemas.ChangeEvent
	for _, g := range gs {
		switch {
		case g.ev.Op == schemas.OpSnapshot && g.ev.CommitLSN == cp2:
			ids[*g.ev.New["id"]] = *g.ev.New["v"]
		case g.ev.Op != schemas.OpSnapshot:
			after = append(after, g.ev)
		case g.ev.CommitLSN != cp1:
			t.Fatalf("snapshot event at a third consistent point %s", g.ev.CommitLSN)
		}
	}
	if len(ids) != rows+1 || ids["1"] != "changed while down" || ids["0"] != "inserted while down" {
		t.Fatalf("second snapshot has %d rows (want %d), id 1 = %q, id 0 = %q", len(ids), rows+1, ids["1"], ids["0"])
	}
	if len(after) != 1 || after[0].Op != schemas.OpDelete || *after[0].Old["id"] != "2" || after[0].CommitLSN <= cp2 {
		t.Fatalf("streamed after the snapshot: %d events, want the one delete after %s", len(after), cp2)
	}
}
