package rollout

import (
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/pgcluster"
	"github.com/heal7/shadowcube/internal/testenv"
)

// TestTwoWayFaults writes on both sides while, in turn, each of the four
// processes (cdc and sync of each direction) is killed with SIGKILL, NATS is
// restarted, and the cube's PostgreSQL is stopped for 10 s. Each fault is
// held until both sides have written through it. Afterwards nothing is
// lost (row counts, reconcile both ways clean) and nothing looped (the CDC
// stream carries each side's own changes once, under its own slot).
func TestTwoWayFaults(t *testing.T) {
	cubePG := testenv.StartCluster(t, pgcluster.Options{})
	w := newWorld(t, worldOpts{cube: cubePG})
	w.startAll()
	l := w.startLoad(15 * time.Millisecond)
	// through waits until both sides made n more changes than at the call
	through := func(what string, n int) {
		t.Helper()
		lb, cb := l.counts()
		w.waitFor(90*time.Second, what, func() bool {
			la, ca := l.counts()
			return la >= lb+n && ca >= cb+n
		})
	}
	applied := func() (int64, int64) {
		return w.count(w.legacy, `SELECT count(*) FROM saju_records WHERE id >= 1000000000000`),
			w.count(w.cube, `SELECT count(*) FROM cube.saju_charts WHERE id < 1000000000000`)
	}
	through("load under way", 20)
	for _, name := range []string{cdcFwd, syncFwd, cdcRev, syncRev} {
		w.procs[name].kill9()
		through(name+" down", 15)
		w.start(name)
		// the restarted process makes progress again
		rb, fb := applied()
		w.waitFor(90*time.Second, name+" applying again", func() bool {
			r, f := applied()
			return r > rb && f > fb
		})
	}
	w.nats.Restart(t)
	through("after the NATS restart", 15)
	rb, fb := applied()
	w.waitFor(2*time.Minute, "both directions applying after the NATS restart", func() bool {
		r, f := applied()
		return r > rb && f > fb
	})
	// the cube database goes away for 10 s: the cube side cannot write, the
	// legacy side keeps writing and the forward sync retries
	lb, _ := l.counts()
	cubePG.Cluster.Stop()
	stopped := time.Now()
	w.waitFor(30*time.Second, "legacy writes while the cube database is down", func() bool {
		la, _ := l.counts()
		return la >= lb+10 && time.Since(stopped) >= 10*time.Second
	})
	if err := cubePG.Cluster.Start(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.cube = testenv.Connect(t, w.cubeURL)
	through("after the cube database restart", 15)
	ln, cn := l.end()
	w.converged(int64(ln-l.updates["legacy"]+cn-l.updates["cube"]), 3*time.Minute)
	w.waitFor(90*time.Second, "both directions reconcile", w.reconcileClean)
	w.checkNoLoop(ln, cn)
	w.reconcileBoth()
}
