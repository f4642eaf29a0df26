package consumers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/pgcluster"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// syncProcess is a real `shadowcube sync` process.
type syncProcess struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	done   chan error
}

func startSyncProcess(t *testing.T, bin, mapping string, env []string) *syncProcess {
	t.Helper()
	p := &syncProcess{cmd: exec.Command(bin, "sync", "--mapping", mapping, "--max-batch", "200"), stderr: &testenv.Buffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	return p
}

func (p *syncProcess) kill9(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *syncProcess) alive() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// TestFaultsKillTargetDownNATSRestart runs a live workload through the real
// cdc reader and a real `shadowcube sync` process that is killed with
// SIGKILL 5 times mid-stream; then the target database is stopped for 30 s
// and NATS is restarted while sync runs. Afterwards reconcile reports zero
// differences: the checkpoint never ran ahead of the data, nothing was lost
// or applied twice.
func TestFaultsKillTargetDownNATSRestart(t *testing.T) {
	e := newEnv(t)
	tpg := testenv.StartCluster(t, pgcluster.Options{})
	e.dstURL = tpg.NewDatabase(t)
	e.dst = connectPinned(t, e.dstURL)
	e.exec(e.src, e2eDDL)
	e.exec(e.dst, e2eDDL)
	installApplyLog(t, e, "cube", "faults", "e2e", "e2e_other")
	bin := testenv.Binary(t)
	e.startCDC("faults", "public.e2e", "public.e2e_other")
	mapping := writeMapping(t, fmt.Sprintf(e2eMapping, "faults"))
	procEnv := []string{"SHADOWCUBE_NATS_URL=" + e.nats.URL, "SHADOWCUBE_METRICS_ADDR=", "SHADOWCUBE_SOURCE_DATABASE_URL=" + e.srcURL,
		"CUBE_URL=" + e.dstURL, "SHADOWCUBE_LOG_LEVEL=info", "SHADOWCUBE_SYNC_RETRY_MAX=1s"}

	var wg sync.WaitGroup
	var stop chan struct{}
	startLoad := func(seed uint64) {
		stop = make(chan struct{})
		for w := seed; w < seed+2; w++ {
			wg.Add(1)
			go func(stop chan struct{}) {
				defer wg.Done()
				workload(e.ctx, t, e.srcURL, w, 0, stop)
			}(stop)
		}
	}
	stopLoad := func() {
		if stop != nil {
			close(stop)
			wg.Wait()
			stop = nil
		}
	}
	t.Cleanup(stopLoad)
	startLoad(11)

	p := startSyncProcess(t, bin, mapping, procEnv)
	defer func() {
		if p.alive() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			<-p.done
		}
		if t.Failed() {
			t.Logf("last sync process stderr:\n%s", p.stderr.String())
		}
	}()
	var restarted []*syncProcess
	for i := 0; i < 5; i++ {
		time.Sleep(time.Duration(700+rand.IntN(800)) * time.Millisecond)
		if !p.alive() {
			t.Fatalf("sync exited on its own before kill %d:\n%s", i+1, p.stderr.String())
		}
		p.kill9(t)
		p = startSyncProcess(t, bin, mapping, procEnv)
		restarted = append(restarted, p)
	}
	// each restart must find messages delivered to the killed process and
	// not acknowledged (killed mid-batch) and re-read them from the ack floor
	// The applier of each new process recreates the consumer from its ack
	// floor and logs how many messages the killed one left unacknowledged.
	// The first four are dead (their log is final: a process killed before
	// it got there counts as a miss); the last one is waited for.
	inFlight := 0
	for i, q := range restarted {
		if i == len(restarted)-1 {
			waitCond(t, 90*time.Second, "the last restarted sync process to open its consumer", func() bool {
				return !q.alive() || strings.Contains(q.stderr.String(), "recreating consumer from its ack floor")
			})
		}
		if m := ackPendingRe.FindStringSubmatch(q.stderr.String()); m != nil && m[1] != "0" {
			inFlight++
		}
	}
	if inFlight < 3 {
		t.Errorf("only %d of 5 kills hit the sync process with unacknowledged messages in flight", inFlight)
	}

	down := 30 * time.Second
	if testing.Short() {
		down = 3 * time.Second
	}
	time.Sleep(500 * time.Millisecond)
	tpg.Cluster.Stop()
	time.Sleep(down)
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	if err := tpg.Cluster.Start(ctx); err != nil {
		t.Fatalf("restart target: %v", err)
	}
	cancel()
	e.dst = connectPinned(t, e.dstURL)
	// NATS restarts while sync still works through the backlog of the
	// outage, with the source load running (cdc and sync both reconnect).
	e.nats.Restart(t)
	time.Sleep(2 * time.Second)
	stopLoad()
	if !p.alive() {
		t.Fatalf("sync exited during the faults:\n%s", p.stderr.String())
	}
	if !t.Run("catch up", func(t *testing.T) { waitCaughtUp(t, e.ctx, e.src, e.dst, "cube", "faults", 90*time.Second) }) {
		var ents []DLQMessage
		ListDLQ(e.ctx, e.js, func(m DLQMessage) error { ents = append(ents, m); return nil })
		for _, en := range ents {
			t.Logf("DLQ: %s %s", en.Entry.Sync.Position, en.Entry.Error)
			dumpStreamAround(t, e, en.Entry.Sync.LSN)
		}
		t.FailNow()
	}
	m := e.loadMapping(fmt.Sprintf(e2eMapping, "faults"))
	reps := reconcileAll(t, e, m, 200)
	if totalDiffs(reps) != 0 {
		dumpStreamFor(t, e, reps)
		t.Fatalf("differences after faults: %s", diffSummary(reps))
	}
	moves := checkAppliedOnce(t, e)
	t.Logf("%d + %d rows identical after 5 kill -9 (%d with messages in flight), target down %s, NATS restart; %d target transactions, none applied a position twice",
		reps[0].SourceRows, reps[1].SourceRows, inFlight, down, moves)
}

var ackPendingRe = regexp.MustCompile(`recreating consumer from its ack floor.*?ack_pending["=:]+\s*(\d+)`)

// installApplyLog adds triggers to the target: every target transaction
// that writes a row of tables, and every move of the checkpoint of
// target/slot, is logged (the log rolls back with its transaction).
func installApplyLog(t *testing.T, e *env, target, slot string, tables ...string) {
	t.Helper()
	if err := EnsureCheckpoint(e.ctx, e.dst, target, slot); err != nil {
		t.Fatal(err)
	}
	e.exec(e.dst, `CREATE TABLE public.test_data_tx (xid bigint PRIMARY KEY);
CREATE TABLE public.test_cp_log (xid bigint, from_lsn pg_lsn, from_idx bigint, to_lsn pg_lsn, to_idx bigint);
CREATE FUNCTION public.test_log_data() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.test_data_tx VALUES (txid_current()) ON CONFLICT DO NOTHING; RETURN NULL; END $$;
CREATE FUNCTION public.test_log_cp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.test_cp_log VALUES (txid_current(), OLD.lsn, OLD.idx, NEW.lsn, NEW.idx); RETURN NEW; END $$;
CREATE TRIGGER test_log_cp BEFORE UPDATE ON shadowcube.applied FOR EACH ROW EXECUTE FUNCTION public.test_log_cp();`)
	for _, tb := range tables {
		e.exec(e.dst, fmt.Sprintf(`CREATE TRIGGER test_log_data AFTER INSERT OR UPDATE OR DELETE ON public.%s FOR EACH ROW EXECUTE FUNCTION public.test_log_data();
CREATE TRIGGER test_log_trunc AFTER TRUNCATE ON public.%s FOR EACH STATEMENT EXECUTE FUNCTION public.test_log_data()`, tb, tb))
	}
}

// checkAppliedOnce proves from the apply log that nothing was applied twice:
// the committed checkpoint moves form one chain of disjoint, increasing
// ranges (each source position lies in at most one target transaction), and
// every target transaction that wrote data moved the checkpoint forward (a
// transaction at or below the checkpoint writes nothing). It returns the
// number of moves.
func checkAppliedOnce(t *testing.T, e *env) int {
	t.Helper()
	type move struct {
		xid        int64
		from, to   pos
		fromS, toS string
	}
	rows, err := e.dst.Query(e.ctx, `SELECT xid, from_lsn::text, from_idx, to_lsn::text, to_idx FROM public.test_cp_log`)
	if err != nil {
		t.Fatal(err)
	}
	var moves []move
	advanced := map[int64]bool{}
	for rows.Next() {
		var m move
		if err := rows.Scan(&m.xid, &m.fromS, &m.from.Idx, &m.toS, &m.to.Idx); err != nil {
			t.Fatal(err)
		}
		m.from.LSN, _ = schemas.ParseLSN(m.fromS)
		m.to.LSN, _ = schemas.ParseLSN(m.toS)
		if !m.from.less(m.to) {
			t.Fatalf("target transaction %d moved the checkpoint from %s back to %s", m.xid, m.from, m.to)
		}
		advanced[m.xid] = true
		moves = append(moves, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Slice(moves, func(i, j int) bool { return moves[i].from.less(moves[j].from) })
	for i := 1; i < len(moves); i++ {
		if moves[i].from != moves[i-1].to {
			t.Fatalf("checkpoint ranges overlap or leave a gap: %s..%s (tx %d) then %s..%s (tx %d)",
				moves[i-1].from, moves[i-1].to, moves[i-1].xid, moves[i].from, moves[i].to, moves[i].xid)
		}
	}
	var writers []int64
	rows, err = e.dst.Query(e.ctx, `SELECT xid FROM public.test_data_tx`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var x int64
		rows.Scan(&x)
		if !advanced[x] {
			writers = append(writers, x)
		}
	}
	if len(writers) > 0 {
		t.Fatalf("target transactions %v wrote data without moving the checkpoint: something was applied twice", writers)
	}
	if len(moves) < 10 {
		t.Fatalf("only %d checkpoint moves logged: the apply log did not work", len(moves))
	}
	return len(moves)
}

// scanStream calls fn for every CDC message up to the end seen at the call
// (cdc keeps publishing heartbeats meanwhile).
func scanStream(t testing.TB, e *env, fn func(jetstream.Msg, schemas.ChangeEvent)) {
	st, err := e.js.Stream(e.ctx, schemas.StreamCDC)
	if err != nil {
		t.Log(err)
		return
	}
	info, err := st.Info(e.ctx)
	if err != nil {
		t.Log(err)
		return
	}
	c, err := e.js.OrderedConsumer(e.ctx, schemas.StreamCDC, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Log(err)
		return
	}
	for {
		b, err := c.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return
		}
		n := 0
		for m := range b.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil || md.Sequence.Stream > info.State.LastSeq {
				return
			}
			if ev, err := schemas.DecodeChangeEvent(m.Data()); err == nil {
				fn(m, ev)
			}
		}
		if n == 0 {
			return
		}
	}
}

// dumpStreamFor logs the CDC events of the differing keys (diagnosis).
func dumpStreamFor(t *testing.T, e *env, reps []TableReport) {
	keys := map[string]bool{}
	for _, r := range reps {
		for _, d := range r.Diffs {
			keys[d.Key["id"]] = true
		}
	}
	scanStream(t, e, func(m jetstream.Msg, ev schemas.ChangeEvent) {
		for _, r := range []schemas.Row{ev.New, ev.Old} {
			if v := r["id"]; v != nil && keys[*v] && ev.Table == "e2e" {
				md, _ := m.Metadata()
				t.Logf("seq %d %s lsn %s idx %d/%d id %s", md.Sequence.Stream, ev.Op, ev.CommitLSN, ev.Index, ev.TxSize, *v)
			}
		}
	})
}

// dumpStreamAround logs the CDC events near lsn (diagnosis).
func dumpStreamAround(t *testing.T, e *env, lsn schemas.LSN) {
	scanStream(t, e, func(m jetstream.Msg, ev schemas.ChangeEvent) {
		if ev.CommitLSN+0x2000 > lsn && ev.CommitLSN < lsn+0x2000 {
			md, _ := m.Metadata()
			t.Logf("seq %d %s %s lsn %s idx %d/%d id %s", md.Sequence.Stream, ev.Table, ev.Op, ev.CommitLSN, ev.Index, ev.TxSize, m.Headers().Get("Nats-Msg-Id"))
		}
	})
}
