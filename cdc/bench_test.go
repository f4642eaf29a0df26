package cdc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/pgcluster"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// BenchmarkB3 measures (docs/performance.md B3) the changes per second a real
// `shadowcube cdc` process reads from a backlog of single-row transactions
// and gets acknowledged by JetStream (until the slot's confirmed_flush_lsn
// reaches the end of the backlog), next to pg_recvlogical (pgoutput) reading
// the same WAL range to /dev/null in the same run; then the peak RSS of the
// process while it handles one transaction of as many rows.
func BenchmarkB3(b *testing.B) {
	n := 200000
	if testing.Short() {
		n = 5000
	}
	recv, err := exec.LookPath("pg_recvlogical")
	if err != nil {
		dir, derr := pgcluster.FindBinDir()
		if derr != nil {
			b.Fatalf("pg_recvlogical not found: %v", err)
		}
		recv = filepath.Join(dir, "pg_recvlogical")
	}
	bin := testenv.Binary(b)
	pg := testenv.Postgres(b)
	url := pg.NewDatabase(b)
	n0 := testenv.StartNATS(b)
	_, js := n0.Connect(b)
	e := &env{url: url, nats: n0, js: js, db: testenv.Connect(b, url)}
	e.exec(b, "CREATE TABLE bench (id int PRIMARY KEY, v text, n numeric, at timestamptz)")
	ctx := context.Background()

	for i := 0; i < b.N; i++ {
		slot := fmt.Sprintf("b3_%d", i)
		// Set up the slot (empty snapshot), stop, then build the backlog.
		p := startProc(b, bin, append(e.procEnv(slot), "SHADOWCUBE_CDC_HEARTBEAT_MODE=off"))
		waitSlot(b, e, slot)
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
		e.exec(b, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot+"_recv")
		e.exec(b, "TRUNCATE bench")
		start := walLSN(b, e)
		e.exec(b, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
			INSERT INTO bench VALUES (i, 'value ' || i, i * 1.25, now()); COMMIT; END LOOP; END $$`, n))
		end := walLSN(b, e)

		t0 := time.Now()
		out, err := exec.Command(recv, "-d", url, "--slot", slot+"_recv", "--start", "-P", "pgoutput",
			"-o", "proto_version=2", "-o", "publication_names=pub_"+slot, "-f", "/dev/null", "-E", end.String(), "-n").CombinedOutput()
		if err != nil {
			b.Fatalf("pg_recvlogical: %v\n%s", err, out)
		}
		recvRate := float64(n) / time.Since(t0).Seconds()
		e.exec(b, "SELECT pg_drop_replication_slot($1)", slot+"_recv")

		t0 = time.Now()
		p = startProc(b, bin, append(e.procEnv(slot), "SHADOWCUBE_CDC_HEARTBEAT_MODE=off"))
		for e.confirmedFlush(b, slot) < end {
			if p.cmd.ProcessState != nil {
				b.Fatalf("cdc exited:\n%s", p.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cdcRate := float64(n) / time.Since(t0).Seconds()
		rssBacklog := peakRSS(b, p.cmd.Process.Pid)
		b.ReportMetric(cdcRate, "changes/s")
		fmt.Printf("bench B3 cdc backlog %d single-row tx (from %s): %.0f changes/s | limit %.0f changes/s | ratio %.2f | target 0.60\n",
			n, start, cdcRate, recvRate, cdcRate/recvRate)

		// One transaction of n rows.
		e.exec(b, fmt.Sprintf("INSERT INTO bench SELECT g, repeat('x', 100) || g, g * 1.25, now() FROM generate_series(%d, %d) g", n+1, 2*n))
		end = walLSN(b, e)
		for e.confirmedFlush(b, slot) < end {
			if p.cmd.ProcessState != nil {
				b.Fatalf("cdc exited:\n%s", p.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		rss := peakRSS(b, p.cmd.Process.Pid)
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
		fmt.Printf("bench B3 peak RSS, backlog then one %d-row transaction: %.1f MiB | limit 150 MiB | ratio %.2f | target <= 1.0 (after backlog alone: %.1f MiB)\n",
			n, rss, rss/150, rssBacklog)
		_ = ctx
	}
}

func walLSN(t testing.TB, e *env) schemas.LSN {
	t.Helper()
	var s string
	if err := e.db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	l, _ := schemas.ParseLSN(s)
	return l
}

func waitSlot(t testing.TB, e *env, slot string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var active bool
		err := e.db.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active)
		if err == nil && active {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("slot %s not streaming within 60s", slot)
}

// peakRSS reads VmHWM (peak resident set) of pid in MiB.
func peakRSS(t testing.TB, pid int) float64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	t.Fatal("VmHWM not found")
	return 0
}
