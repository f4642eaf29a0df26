package consumers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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
	inFlight := 0
	for _, q := range restarted {
		for i := 0; i < 100 && !strings.Contains(q.stderr.String(), "sync running"); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		if strings.Contains(q.stderr.String(), "recreating consumer from its ack floor") {
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
	t.Logf("%d + %d rows identical after 5 kill -9, target down %s, NATS restart", reps[0].SourceRows, reps[1].SourceRows, down)
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
