package rollout

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// world is a two-way sync set-up on real components: the demo's legacy and
// cube schemas in two databases, embedded NATS, and four real shadowcube
// processes (cdc and sync in each direction) that tests kill -9 and restart.
type world struct {
	t                  testing.TB
	ctx                context.Context
	legacyURL, cubeURL string
	legacy, cube       *pgx.Conn
	nats               *testenv.NATS
	nc                 *nats.Conn
	js                 jetstream.JetStream
	fwd, rev           *consumers.Mapping
	fwdFile, revFile   string
	fwdSlot, revSlot   string
	bin                string
	procs              map[string]*proc
	metricsAddr        map[string]string // process -> its metrics address (none: metrics off)
}

var worldSeq atomic.Int64

type worldOpts struct {
	legacy, cube *testenv.PG // default: the shared cluster
	fwdPolicy    string      // conflict policy of the forward table (default legacy-wins)
	revPolicy    string      // of the reverse table (default legacy-wins)
}

func newWorld(t testing.TB, o worldOpts) *world {
	t.Helper()
	if o.legacy == nil {
		o.legacy = testenv.Postgres(t)
	}
	if o.cube == nil {
		o.cube = o.legacy
	}
	n := worldSeq.Add(1)
	w := &world{t: t, ctx: testenv.Context(t, 8*time.Minute), procs: map[string]*proc{},
		fwdSlot: fmt.Sprintf("rollout_fwd_%d_%d", os.Getpid(), n), revSlot: fmt.Sprintf("rollout_rev_%d_%d", os.Getpid(), n)}
	w.legacyURL, w.cubeURL = o.legacy.NewDatabase(t), o.cube.NewDatabase(t)
	w.legacy, w.cube = testenv.Connect(t, w.legacyURL), testenv.Connect(t, w.cubeURL)
	w.exec(w.legacy, demo.LegacySchema)
	w.exec(w.cube, demo.CubeSchema)
	w.exec(w.legacy, demo.LegacyRolloutSchema)
	w.exec(w.cube, demo.CubeRolloutSchema)
	w.nats = testenv.StartNATS(t)
	w.nc, w.js = w.nats.Connect(t)
	cfg, err := natsx.StreamConfig(schemas.StreamCDC, natsx.StreamSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.EnsureStream(w.ctx, w.js, cfg); err != nil {
		t.Fatal(err)
	}
	policy := func(p string) string {
		if p == "" {
			return consumers.ConflictLegacyWins
		}
		return p
	}
	fwd := strings.NewReplacer("slot: shadowcube_forward", "slot: "+w.fwdSlot, "conflict: legacy-wins", "conflict: "+policy(o.fwdPolicy)).Replace(demo.ForwardMapping)
	rev := strings.NewReplacer("slot: shadowcube_reverse", "slot: "+w.revSlot, "conflict: legacy-wins", "conflict: "+policy(o.revPolicy)).Replace(demo.ReverseMapping)
	dir := t.TempDir()
	w.fwdFile, w.revFile = filepath.Join(dir, "forward.yaml"), filepath.Join(dir, "reverse.yaml")
	for f, s := range map[string]string{w.fwdFile: fwd, w.revFile: rev} {
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if w.fwd, err = consumers.LoadMapping(w.fwdFile); err != nil {
		t.Fatal(err)
	}
	if w.rev, err = consumers.LoadMapping(w.revFile); err != nil {
		t.Fatal(err)
	}
	w.bin = testenv.Binary(t)
	t.Cleanup(func() {
		for _, p := range w.procs {
			p.kill9()
		}
		for _, u := range []string{w.legacyURL, w.cubeURL} {
			dropSlots(u)
		}
	})
	return w
}

func dropSlots(url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return
	}
	defer c.Close(ctx)
	c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active`)
}

func (w *world) exec(c *pgx.Conn, sql string, args ...any) {
	w.t.Helper()
	if _, err := c.Exec(w.ctx, sql, args...); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

func (w *world) count(c *pgx.Conn, sql string, args ...any) int64 {
	w.t.Helper()
	var n int64
	if err := c.QueryRow(w.ctx, sql, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// proc is one real shadowcube process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	done   chan error
}

func (p *proc) kill9() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
	p.done <- nil
}

func (p *proc) alive() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// Stage names.
const (
	cdcFwd  = "cdc-forward"
	syncFwd = "sync-forward"
	cdcRev  = "cdc-reverse"
	syncRev = "sync-reverse"
)

// start starts (or restarts) one of the four processes.
func (w *world) start(name string) {
	w.t.Helper()
	env := append(os.Environ(), "SHADOWCUBE_NATS_URL="+w.nats.URL, "SHADOWCUBE_METRICS_ADDR="+w.metricsAddr[name], "SHADOWCUBE_LOG_LEVEL=info",
		"SHADOWCUBE_LEGACY_DATABASE_URL="+w.legacyURL, "SAJU_CUBE_DATABASE_URL="+w.cubeURL,
		"SHADOWCUBE_SYNC_RETRY_MAX=1s", "SHADOWCUBE_CDC_HEARTBEAT=250ms")
	var args []string
	switch name {
	case cdcFwd:
		args = []string{"cdc"}
		env = append(env, "SHADOWCUBE_SOURCE_DATABASE_URL="+w.legacyURL, "SHADOWCUBE_CDC_SLOT="+w.fwdSlot, "SHADOWCUBE_CDC_IGNORE_ORIGINS="+w.revSlot)
	case cdcRev:
		args = []string{"cdc"}
		env = append(env, "SHADOWCUBE_SOURCE_DATABASE_URL="+w.cubeURL, "SHADOWCUBE_CDC_SLOT="+w.revSlot, "SHADOWCUBE_CDC_IGNORE_ORIGINS="+w.fwdSlot)
	case syncFwd:
		args = []string{"sync", "--mapping", w.fwdFile, "--max-batch", "200"}
		env = append(env, "SHADOWCUBE_SOURCE_DATABASE_URL="+w.legacyURL)
	case syncRev:
		args = []string{"sync", "--mapping", w.revFile, "--max-batch", "200"}
		env = append(env, "SHADOWCUBE_SOURCE_DATABASE_URL="+w.cubeURL)
	default:
		w.t.Fatalf("unknown process %s", name)
	}
	p := &proc{name: name, cmd: exec.Command(w.bin, args...), stderr: &testenv.Buffer{}, done: make(chan error, 1)}
	p.cmd.Env = env
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	w.procs[name] = p
}

// startAll starts the four processes: cdc first, so each slot exists before
// anything is written.
func (w *world) startAll() {
	w.t.Helper()
	w.start(cdcFwd)
	w.start(cdcRev)
	for _, s := range []struct{ url, slot string }{{w.legacyURL, w.fwdSlot}, {w.cubeURL, w.revSlot}} {
		c := w.legacy
		if s.url == w.cubeURL {
			c = w.cube
		}
		w.waitFor(90*time.Second, "slot "+s.slot+" streaming", func() bool {
			return w.count(c, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active`, s.slot) == 1
		})
	}
	w.start(syncFwd)
	w.start(syncRev)
}

// waitFor polls cond until it holds; the test fails with what after d.
func (w *world) waitFor(d time.Duration, what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		for _, p := range w.procs {
			if !p.alive() && p.cmd.ProcessState != nil && !p.cmd.ProcessState.Success() && p.cmd.ProcessState.ExitCode() > 0 {
				w.t.Fatalf("%s exited (%v) while waiting for %s:\n%s", p.name, p.cmd.ProcessState, what, p.stderr.String())
			}
		}
		if time.Now().After(deadline) {
			w.dumpLogs()
			w.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *world) dumpLogs() {
	for _, p := range w.procs {
		w.t.Logf("--- %s log:\n%s", p.name, tail(p.stderr.String(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// legacyInsert writes a chart in legacy as the legacy service would.
func (w *world) legacyInsert(c *pgx.Conn, user string, i int) (int64, error) {
	var id int64
	err := c.QueryRow(w.ctx, `INSERT INTO saju_records (user_id, birth_year, birth_month, birth_day, birth_hour, is_solar,
  year_pillar, month_pillar, day_pillar, hour_pillar, interpretation) VALUES ($1, $2, 5, 15, $3, true, '경오', '신사', '갑자', NULL, $4) RETURNING id`,
		user, 1950+i%60, nullHour(i), fmt.Sprintf("legacy %d", i)).Scan(&id)
	return id, err
}

func nullHour(i int) any {
	if i%3 == 0 {
		return nil
	}
	return i % 24
}

// cubeInsert writes a chart in the cube database as the cube service would.
func (w *world) cubeInsert(c *pgx.Conn, user string, i int) (int64, error) {
	var id int64
	err := c.QueryRow(w.ctx, `INSERT INTO cube.saju_charts (id, user_id, birth_info, saju_chart, interpretation, created_at)
VALUES (nextval('cube.saju_charts_own_id'), $1, jsonb_build_object('year', $2::int, 'month', 7, 'day', 1, 'hour', $3::int, 'solar_calendar', false),
  jsonb_build_object('year_pillar', '갑자', 'month_pillar', '을축', 'day_pillar', '병인', 'hour_pillar', '정묘'), $4, now()) RETURNING id`,
		user, 1960+i%50, nullHour(i), fmt.Sprintf("cube %d", i)).Scan(&id)
	return id, err
}

// streamCounts reads the whole CDC stream and counts, per slot, the distinct
// changes (commit LSN, index) of the saju tables and the ids they carry.
type slotCount struct {
	changes map[string]bool // "lsn/index"
	ids     map[string]int  // row id -> distinct changes carrying it
	copies  int             // messages including redeliveries and re-publishes
}

func (w *world) streamCounts() map[string]*slotCount {
	w.t.Helper()
	s, err := w.js.Stream(w.ctx, schemas.StreamCDC)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := s.Info(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]*slotCount{}
	if info.State.Msgs == 0 {
		return out
	}
	c, err := s.OrderedConsumer(w.ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		w.t.Fatal(err)
	}
	for got := uint64(0); got < info.State.Msgs; {
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			w.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := schemas.DecodeChangeEvent(m.Data())
			if err != nil {
				w.t.Fatalf("stream message: %v", err)
			}
			if ev.Table != "saju_records" && ev.Table != "saju_charts" {
				continue
			}
			sc := out[ev.Slot]
			if sc == nil {
				sc = &slotCount{changes: map[string]bool{}, ids: map[string]int{}}
				out[ev.Slot] = sc
			}
			sc.copies++
			k := fmt.Sprintf("%s/%d", ev.CommitLSN, ev.Index)
			if sc.changes[k] {
				continue
			}
			sc.changes[k] = true
			row := ev.New
			if row == nil {
				row = ev.Old
			}
			if v := row["id"]; v != nil {
				sc.ids[*v]++
			}
		}
		if n == 0 {
			break
		}
		got += uint64(n)
	}
	return out
}

// checkNoLoop proves from the stream that each change crossed at most once
// each way: the forward slot carries only legacy's own rows (ids below the
// cube's range), the reverse slot only the cube's own rows, and each carries
// exactly as many changes as were made on its side.
func (w *world) checkNoLoop(legacyChanges, cubeChanges int) {
	w.t.Helper()
	counts := w.streamCounts()
	fwd, rev := counts[w.fwdSlot], counts[w.revSlot]
	if fwd == nil || rev == nil {
		w.t.Fatalf("stream holds no saju changes of slot %s or %s: %v", w.fwdSlot, w.revSlot, counts)
	}
	for id := range fwd.ids {
		if len(id) >= 13 { // >= 10^12: a cube-created row came back through legacy's slot
			w.t.Errorf("loop: cube row id %s was published by the forward slot", id)
		}
	}
	for id := range rev.ids {
		if len(id) < 13 {
			w.t.Errorf("loop: legacy row id %s was published by the reverse slot", id)
		}
	}
	if len(fwd.changes) != legacyChanges || len(rev.changes) != cubeChanges {
		w.t.Errorf("changes published: forward %d (want the %d made in legacy), reverse %d (want the %d made in the cube)",
			len(fwd.changes), legacyChanges, len(rev.changes), cubeChanges)
	}
	w.t.Logf("no loop: forward slot %d changes (%d messages), reverse slot %d changes (%d messages)",
		len(fwd.changes), fwd.copies, len(rev.changes), rev.copies)
}

// reconcileBoth compares both directions and fails the test on a difference.
func (w *world) reconcileBoth() {
	w.t.Helper()
	for _, d := range []struct {
		m        *consumers.Mapping
		src, dst string
	}{{w.fwd, w.legacyURL, w.cubeURL}, {w.rev, w.cubeURL, w.legacyURL}} {
		reps, err := reconcile(w.ctx, d.m, d.m.Targets[0].Name, d.src, d.dst, 30*time.Second)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, r := range reps {
			if r.Differences != 0 || r.SourceRows == 0 {
				w.t.Errorf("reconcile %s → %s: %d rows, %d differences: %+v", r.Source, r.Table, r.SourceRows, r.Differences, r.Diffs)
			}
		}
	}
}

// converged waits until both databases hold the same number of rows, n.
func (w *world) converged(n int64, d time.Duration) {
	w.t.Helper()
	w.waitFor(d, fmt.Sprintf("both databases at %d rows", n), func() bool {
		return w.count(w.legacy, `SELECT count(*) FROM saju_records`) == n && w.count(w.cube, `SELECT count(*) FROM cube.saju_charts`) == n
	})
}

// reconcileClean reports whether both directions reconcile without a
// difference right now (no settle wait).
func (w *world) reconcileClean() bool {
	w.t.Helper()
	for _, d := range []struct {
		src, dst string
		rev      bool
	}{{w.legacyURL, w.cubeURL, false}, {w.cubeURL, w.legacyURL, true}} {
		m := w.fwd
		if d.rev {
			m = w.rev
		}
		reps, err := reconcile(w.ctx, m, m.Targets[0].Name, d.src, d.dst, 0)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, r := range reps {
			if r.Differences != 0 {
				return false
			}
		}
	}
	return true
}
