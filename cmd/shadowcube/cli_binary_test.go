package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// The tests of this file run the built binary (testenv.Binary), so what
// they see is what an operator sees: exit codes, stdout, stderr and
// everything any library writes to the process's output.

const cliSecret = "s3cretPW"

// runBinary runs the shadowcube binary with env added to this process's
// environment and returns its stdout, stderr and exit code.
func runBinary(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// cliMapping writes a mapping file and returns its path.
func cliMapping(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cliEnv is a source and a target database and an embedded NATS server
// with the CDC stream, for tests that drive the binary against them.
type cliEnv struct {
	t              *testing.T
	ctx            context.Context
	srcURL, dstURL string
	src, dst       *pgx.Conn
	nats           *testenv.NATS
	js             jetstream.JetStream
	lsn            schemas.LSN
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	pg := testenv.Postgres(t)
	e := &cliEnv{t: t, ctx: testenv.Context(t, 5*time.Minute), srcURL: pg.NewDatabase(t), dstURL: pg.NewDatabase(t), lsn: 0x1000000}
	e.src, e.dst = testenv.Connect(t, e.srcURL), testenv.Connect(t, e.dstURL)
	e.nats = testenv.StartNATS(t)
	_, e.js = e.nats.Connect(t)
	cfg, err := natsx.StreamConfig(schemas.StreamCDC, natsx.StreamSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.EnsureStream(e.ctx, e.js, cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *cliEnv) exec(db *pgx.Conn, sql string, args ...any) {
	e.t.Helper()
	if _, err := db.Exec(e.ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// insertItem inserts (id, price) into the source's items table and
// publishes it as one source transaction at the next LSN, as the cdc reader
// does, with the source's own text values.
func (e *cliEnv) insertItem(id, price string) schemas.LSN {
	e.t.Helper()
	e.exec(e.src, `INSERT INTO items VALUES ($1, $2)`, id, price)
	var idText, priceText string
	if err := e.src.QueryRow(e.ctx, `SELECT id::text, price::text FROM items WHERE id = $1`, id).Scan(&idText, &priceText); err != nil {
		e.t.Fatal(err)
	}
	e.lsn += 0x100
	ev := schemas.ChangeEvent{V: schemas.Version, Slot: "s1", DB: "legacy", Schema: "public", Table: "items", Op: schemas.OpInsert,
		CommitLSN: e.lsn, TxID: uint32(e.lsn), Index: 0, TxSize: 1, CommitTime: time.Now().UTC(),
		Columns: []schemas.Column{{Name: "id", Type: "bigint", Key: true}, {Name: "price", Type: "numeric"}}, Key: []string{"id"},
		New: schemas.Row{"id": &idText, "price": &priceText}}
	data, err := json.Marshal(&ev)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := nats.NewMsg(schemas.ChangeSubject(ev.DB, ev.Schema, ev.Table))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("s1:%s:0", ev.CommitLSN))
	if _, err := e.js.PublishMsg(e.ctx, msg); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	return e.lsn
}

// poisonSetup: three source transactions insert items 1, 2 and 3; the
// target's CHECK constraint rejects item 2's negative price. It returns the
// mapping (target cube on $X, the given on_poison policy) and the LSNs.
func (e *cliEnv) poisonSetup(policy string) (*consumers.Mapping, [3]schemas.LSN) {
	e.t.Helper()
	e.exec(e.src, `CREATE TABLE items (id bigint PRIMARY KEY, price numeric)`)
	e.exec(e.dst, `CREATE TABLE items (id bigint PRIMARY KEY, price numeric CHECK (price >= 0))`)
	m, err := consumers.LoadMapping(cliMapping(e.t, "source: {slot: s1}\ntargets:\n  - name: cube\n    database_url_env: X\n    on_poison: "+policy+"\n    tables:\n      - source: items\n        key: [id]\n"))
	if err != nil {
		e.t.Fatal(err)
	}
	var lsns [3]schemas.LSN
	for i, price := range []string{"1", "-5", "3"} {
		lsns[i] = e.insertItem(fmt.Sprint(i+1), price)
	}
	return m, lsns
}

// startSync runs the sync stage of m (every target on dstURL) in this
// process until the returned stop is called; its metrics go to the
// returned registry.
func (e *cliEnv) startSync(m *consumers.Mapping) (*prometheus.Registry, func()) {
	e.t.Helper()
	urls := map[string]string{}
	for _, tg := range m.Targets {
		urls[tg.Name] = e.dstURL
	}
	reg := prometheus.NewRegistry()
	s, err := consumers.New(consumers.Config{Mapping: m, SourceURL: e.srcURL, TargetURLs: urls, MaxBatch: 100,
		RetryMax: 500 * time.Millisecond}, consumers.Deps{JetStream: e.js, Logger: testenv.Logger(e.t), Registerer: reg})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("sync run: %v", err)
			}
			s.Close()
		})
	}
	e.t.Cleanup(stop)
	return reg, stop
}

// waitCheckpoint waits until target cube's checkpoint reaches lsn.
func (e *cliEnv) waitCheckpoint(lsn schemas.LSN) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cp, err := consumers.ReadCheckpoint(e.ctx, e.dst, "cube", "s1")
		if err == nil && cp.LSN >= lsn {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("target cube checkpoint %s did not reach %s within 30s (err %v)", cp.LSN, lsn, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCLIReconcileAndDLQ drives the real binary: reconcile exits 0 on equal
// tables and 1 with the differing row in JSON; dlq list/show/replay work on
// a poison transaction of a stopped target, which then resumes.
// (Moved from consumers.)
func TestCLIReconcileAndDLQ(t *testing.T) {
	e := newCLIEnv(t)
	m, lsns := e.poisonSetup("stop")
	reg, stop := e.startSync(m)
	env := []string{"SHADOWCUBE_NATS_URL=" + e.nats.URL, "SHADOWCUBE_METRICS_ADDR=", "SHADOWCUBE_SOURCE_DATABASE_URL=" + e.srcURL, "X=" + e.dstURL}
	deadline := time.Now().Add(30 * time.Second)
	for testenv.MetricSum(t, reg, "shadowcube_sync_stopped", "target", "cube") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("target did not stop")
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, stderr, code := runBinary(t, env, "dlq", "list")
	if code != 0 || !strings.Contains(out, "cube") || !strings.Contains(out, lsns[1].String()) || !strings.Contains(out, "check constraint") {
		t.Fatalf("dlq list: code %d\n%s\n%s", code, out, stderr)
	}
	seq := strings.Fields(strings.Split(out, "\n")[1])[0]
	out, stderr, code = runBinary(t, env, "dlq", "show", seq)
	var shown consumers.DLQMessage
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.Entry.Sync.LSN != lsns[1] || len(shown.Entry.Sync.Events) != 1 {
		t.Fatalf("dlq show: code %d\n%s\n%s", code, out, stderr)
	}
	fixed := cliMapping(t, "source: {slot: s1}\ntargets:\n  - name: cube\n    database_url_env: X\n    tables:\n      - source: items\n        key: [id]\n        columns:\n          price: abs(price)\n")
	out, stderr, code = runBinary(t, env, "dlq", "replay", seq, "--mapping", fixed)
	if code != 0 || !strings.Contains(out, "replayed "+seq) {
		t.Fatalf("dlq replay: code %d\n%s\n%s", code, out, stderr)
	}
	e.waitCheckpoint(lsns[2])
	stop()

	// reconcile through the fixed mapping: abs(price) of row 2 is 5 in both;
	// each run's result goes to the mismatch store, for the gate
	storeURL := testenv.Postgres(t).NewDatabase(t)
	env = append(env, "SHADOWCUBE_STORE_DATABASE_URL="+storeURL)
	out, stderr, code = runBinary(t, env, "reconcile", "--mapping", fixed, "--format", "json")
	if code != 0 || !strings.Contains(out, `"differences": 0`) {
		t.Fatalf("reconcile of equal tables: code %d\n%s\n%s", code, out, stderr)
	}
	e.exec(e.dst, `UPDATE items SET price = 42 WHERE id = 3`)
	out, stderr, code = runBinary(t, env, "reconcile", "--mapping", fixed, "--format", "json")
	var rep struct {
		Tables      []consumers.TableReport `json:"tables"`
		Differences int                     `json:"differences"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.Differences != 1 || rep.Tables[0].Diffs[0].Key["id"] != "3" ||
		*rep.Tables[0].Diffs[0].Columns[0].Target != "42" {
		t.Fatalf("reconcile with drift: code %d\n%s\n%s", code, out, stderr)
	}
	out, _, code = runBinary(t, env, "reconcile", "--mapping", fixed)
	if code != 1 || !strings.Contains(out, `price: source "3", target "42"`) {
		t.Fatalf("reconcile text: code %d\n%s", code, out)
	}
	var runs []string
	rows, err := testenv.Connect(t, storeURL).Query(context.Background(),
		`SELECT target || ' ' || clean || ' ' || differences || ' ' || tables FROM shadowcube_compare.reconcile_runs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if strings.Join(runs, "|") != "cube true 0 1|cube false 1 1|cube false 1 1" {
		t.Fatalf("recorded reconcile runs %q, want a clean one then two with 1 difference", runs)
	}
	// bad mapping file: error names file and line, exit 1
	bad := cliMapping(t, "targets:\n  - name: cube\n    database_url_env: X\n    tables:\n      - source: items\n        key: [id]\n        columns:\n          price: pricee\n")
	_, stderr, code = runBinary(t, env, "reconcile", "--mapping", bad)
	if code != 1 || !strings.Contains(stderr, bad+":8:") || !strings.Contains(stderr, `column "pricee" does not exist`) {
		t.Fatalf("bad mapping: code %d\n%s", code, stderr)
	}
}

// TestCLIDLQSyncStages: the CLI lists, shows and drops sync's dead letters
// (a poison transaction and an undecodable CDC message) by stage, and the
// other stages' views stay empty. (Moved from consumers
// TestDLQSyncEnvelopeAndCLI, which keeps the envelope checks as
// TestDLQSyncEnvelope.)
func TestCLIDLQSyncStages(t *testing.T) {
	e := newCLIEnv(t)
	m, lsns := e.poisonSetup("skip")
	garbage := nats.NewMsg(schemas.ChangeSubject("legacy", "public", "items"))
	garbage.Data = []byte("garbage")
	garbage.Header.Set("X-Trace", "t-9")
	if _, err := e.js.PublishMsg(e.ctx, garbage); err != nil {
		t.Fatal(err)
	}
	last := e.insertItem("4", "4")
	_, stop := e.startSync(m)
	e.waitCheckpoint(last)
	stop()
	entries := cliDLQEntries(e)
	if len(entries) != 2 {
		t.Fatalf("DLQ holds %d sync entries, want 2: %+v", len(entries), entries)
	}

	env := []string{"SHADOWCUBE_NATS_URL=" + e.nats.URL, "SHADOWCUBE_METRICS_ADDR="}
	out, stderr, code := runBinary(t, env, "dlq", "list", "--stage", "sync")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.Contains(lines[1], "apply-failed") ||
		!strings.Contains(lines[1], "cube@"+lsns[1].String()) || !strings.Contains(lines[2], "undecodable") {
		t.Fatalf("dlq list --stage sync: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, other := range []string{"shadow", "compare"} {
		out, stderr, code = runBinary(t, env, "dlq", "list", "--stage", other)
		if code != 0 || strings.Count(out, "\n") != 1 {
			t.Fatalf("dlq list --stage %s: exit %d\n%s\n%s", other, code, out, stderr)
		}
	}
	seq0, seq1 := fmt.Sprint(entries[0].Seq), fmt.Sprint(entries[1].Seq)
	out, stderr, code = runBinary(t, env, "dlq", "show", "--stage", "sync", seq1)
	var shown consumers.DLQMessage
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || string(shown.Entry.Payload) != "garbage" {
		t.Fatalf("dlq show --stage sync: exit %d\n%s\n%s", code, out, stderr)
	}
	_, stderr, code = runBinary(t, env, "dlq", "drop", "--stage", "shadow", seq0)
	if code != 1 || !strings.Contains(stderr, "not a shadow entry") {
		t.Fatalf("dlq drop --stage shadow of a sync entry: exit %d\n%s", code, stderr)
	}
	out, stderr, code = runBinary(t, env, "dlq", "drop", "--stage", "sync", seq0, seq1)
	if code != 0 || out != "dropped "+seq0+"\ndropped "+seq1+"\n" {
		t.Fatalf("dlq drop: exit %d\n%s\n%s", code, out, stderr)
	}
	if n := len(cliDLQEntries(e)); n != 0 {
		t.Fatalf("DLQ holds %d after drop", n)
	}
}

func cliDLQEntries(e *cliEnv) []consumers.DLQMessage {
	e.t.Helper()
	var out []consumers.DLQMessage
	if err := consumers.ListDLQ(e.ctx, e.js, func(m consumers.DLQMessage) error { out = append(out, m); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestCLIReconcileNeverPassesByAccident drives the real binary: an unknown
// target or table, or one that no selected target maps, exits 2 and lists
// the known ones (it exited 0 with no output before); out-of-range numbers
// of reconcile and sync exit 2 naming the flag or variable and the range.
// (Moved from consumers.)
func TestCLIReconcileNeverPassesByAccident(t *testing.T) {
	e := newCLIEnv(t)
	for _, db := range []*pgx.Conn{e.src, e.dst} {
		e.exec(db, `CREATE TABLE items (id bigint PRIMARY KEY, v text); CREATE TABLE things (id bigint PRIMARY KEY)`)
		e.exec(db, `INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 30) g`)
	}
	mapping := cliMapping(t, `
source: {slot: s1}
targets:
  - name: cube
    database_url_env: X
    tables:
      - source: public.items
        key: [id]
  - name: other
    database_url_env: X
    tables:
      - source: public.things
        key: [id]
`)
	env := []string{"SHADOWCUBE_NATS_URL=" + e.nats.URL, "SHADOWCUBE_METRICS_ADDR=", "SHADOWCUBE_SOURCE_DATABASE_URL=" + e.srcURL,
		"X=" + e.dstURL, "SHADOWCUBE_MAPPING_FILE=" + mapping}
	// progress first: the same binary and set-up compare and pass
	out, stderr, code := runBinary(t, env, "reconcile", "--target", "cube", "--table", "items")
	if code != 0 || !strings.Contains(out, "cube public.items -> public.items: source 30 rows, target 30 rows, 0 differences") || strings.Contains(out, "things") {
		t.Fatalf("selected table: code %d\n%s\n%s", code, out, stderr)
	}
	out, stderr, code = runBinary(t, env, "reconcile")
	if code != 0 || !strings.Contains(out, "cube public.items") || !strings.Contains(out, "other public.things") {
		t.Fatalf("all tables: code %d\n%s\n%s", code, out, stderr)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"unknown target", nil, []string{"reconcile", "--target", "nosuch"}, []string{"--target nosuch: no such target", "known: cube, other"}},
		{"unknown table", nil, []string{"reconcile", "--table", "public.nosuch"}, []string{"--table public.nosuch: no selected target maps such a table", "known: cube: public.items; other: public.things"}},
		{"table of another target", nil, []string{"reconcile", "--target", "cube", "--table", "things"}, []string{"--table things:", "known: cube: public.items"}},
		{"leaf rows negative", nil, []string{"reconcile", "--leaf-rows", "-1"}, []string{"--leaf-rows -1: must be at least 1"}},
		{"leaf rows zero", nil, []string{"reconcile", "--leaf-rows", "0"}, []string{"--leaf-rows 0: must be at least 1"}},
		{"settle negative", nil, []string{"reconcile", "--settle", "-5s"}, []string{"--settle -5s: must be 0 (off) or positive"}},
		{"max diffs", nil, []string{"reconcile", "--max-diffs", "-2"}, []string{"--max-diffs -2: must be at least 1"}},
		{"sync unknown target", nil, []string{"sync", "--target", "nosuch"}, []string{"--target nosuch: no such target", "known: cube, other"}},
		{"sync max batch flag", nil, []string{"sync", "--max-batch", "-3"}, []string{"--max-batch -3: must be at least 1"}},
		{"sync max batch env", []string{"SHADOWCUBE_SYNC_MAX_BATCH=-3"}, []string{"sync"}, []string{`SHADOWCUBE_SYNC_MAX_BATCH="-3": out of range: must be at least 1`}},
		{"sync sequence interval flag", nil, []string{"sync", "--sequences", "--sequence-interval", "0s"}, []string{"--sequence-interval 0s: must be at least 1s"}},
		{"sync sequence interval env", []string{"SHADOWCUBE_SYNC_SEQUENCE_INTERVAL=-1s"}, []string{"sync"}, []string{`SHADOWCUBE_SYNC_SEQUENCE_INTERVAL="-1s": out of range: must be at least 1s`}},
		{"sync ack wait", []string{"SHADOWCUBE_SYNC_ACK_WAIT=-1s"}, []string{"sync"}, []string{`SHADOWCUBE_SYNC_ACK_WAIT="-1s": out of range: must be at least 1s`}},
		{"sync retry max", []string{"SHADOWCUBE_SYNC_RETRY_MAX=0s"}, []string{"sync"}, []string{`SHADOWCUBE_SYNC_RETRY_MAX="0s": out of range: must be at least 1ms`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runBinary(t, append(append([]string(nil), env...), tc.env...), tc.args...)
			if code != 2 || out != "" {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q; want exit 2 and no output", tc.args, code, out, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("%v: stderr %q lacks %q", tc.args, stderr, w)
				}
			}
		})
	}
}

// TestCLISyncSequences drives the real binary: reconcile flags the cube
// sequences left behind by a row copy (exit 1), `sync --sequences` moves
// them and says so, reconcile then passes, and a second run moves nothing.
// (Moved from consumers.)
func TestCLISyncSequences(t *testing.T) {
	e := newCLIEnv(t)
	e.exec(e.src, cliSeqSrcDDL)
	e.exec(e.dst, cliSeqDstDDL)
	e.exec(e.src, `INSERT INTO parents (name) SELECT 'p' || g FROM generate_series(1, 40) g`)
	e.exec(e.src, `INSERT INTO children (parent, body) SELECT 1 + g % 40, 'b' FROM generate_series(1, 75) g`)
	copySeqRows(e)
	mapping := cliMapping(t, strings.Replace(cliSeqMapping, "CUBE_URL", "X", 1))
	env := []string{"SHADOWCUBE_NATS_URL=" + e.nats.URL, "SHADOWCUBE_METRICS_ADDR=", "SHADOWCUBE_SOURCE_DATABASE_URL=" + e.srcURL,
		"X=" + e.dstURL, "SHADOWCUBE_MAPPING_FILE=" + mapping}
	out, stderr, code := runBinary(t, env, "reconcile")
	if code != 1 || !strings.Contains(out, "sequence behind: public.parents_id_seq (column id) next value 1, largest id 40") ||
		!strings.Contains(out, "sequence behind: public.children_id_seq (column id) next value 1, largest id 75") {
		t.Fatalf("reconcile before: code %d\n%s\n%s", code, out, stderr)
	}
	out, stderr, code = runBinary(t, env, "sync", "--sequences")
	if code != 0 || !strings.Contains(out, "cube public.parents_id_seq (public.parents.id): next value 1 -> 41, moved") ||
		!strings.Contains(out, "cube public.children_id_seq (public.children.id): next value 1 -> 76, moved (highest in use 75, source last value 75)") {
		t.Fatalf("sync --sequences: code %d\n%s\n%s", code, out, stderr)
	}
	out, stderr, code = runBinary(t, env, "reconcile", "--format", "json")
	if code != 0 || !strings.Contains(out, `"differences": 0`) || !strings.Contains(out, `"sequence": "public.parents_id_seq"`) {
		t.Fatalf("reconcile after: code %d\n%s\n%s", code, out, stderr)
	}
	out, stderr, code = runBinary(t, env, "sync", "--sequences")
	if code != 0 || strings.Contains(out, "moved") || !strings.Contains(out, "next value 41 -> 41, already past the values in use") {
		t.Fatalf("second sync --sequences: code %d\n%s\n%s", code, out, stderr)
	}
}

// The sequence fixture of consumers' sequence tests: identity, serial and
// bigserial keys, and a table whose cube keys are shifted by 1000.
const (
	cliSeqSrcDDL = `
CREATE TABLE parents (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
CREATE TABLE children (id bigserial PRIMARY KEY, parent int NOT NULL REFERENCES parents, body text NOT NULL);
CREATE TABLE codes (code int PRIMARY KEY, label text);
CREATE TABLE shifted (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)`
	cliSeqDstDDL = `
CREATE TABLE parents (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL);
CREATE TABLE children (id bigserial PRIMARY KEY, parent int NOT NULL REFERENCES parents, body text NOT NULL);
CREATE TABLE codes (code serial PRIMARY KEY, label text);
CREATE TABLE shifted (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)`
	cliSeqMapping = `
source: {slot: s1}
targets:
  - name: cube
    database_url_env: CUBE_URL
    tables:
      - source: public.parents
        key: [id]
      - source: public.children
        key: [id]
      - source: public.codes
        key: [code]
      - source: public.shifted
        key: [id]
        columns:
          id: id + 1000
          v: v
`
)

// copySeqRows copies the source rows of the seq schema into the cube as sync
// would (explicit keys, never the cube's defaults).
func copySeqRows(e *cliEnv) {
	e.t.Helper()
	for _, q := range []struct{ sel, ins string }{
		{`SELECT id, name FROM parents`, `INSERT INTO parents (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = excluded.name`},
		{`SELECT id, parent, body FROM children`, `INSERT INTO children (id, parent, body) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET body = excluded.body`},
		{`SELECT code, label FROM codes`, `INSERT INTO codes (code, label) VALUES ($1, $2) ON CONFLICT (code) DO UPDATE SET label = excluded.label`},
		{`SELECT id + 1000, v FROM shifted`, `INSERT INTO shifted (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v`},
	} {
		rows, err := e.src.Query(e.ctx, q.sel)
		if err != nil {
			e.t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			e.t.Fatal(err)
		}
		for _, v := range vals {
			e.exec(e.dst, q.ins, v...)
		}
	}
}

// TestCLIStartupFailsFast: `shadowcube cdc` (the built binary) exits with an error within
// SHADOWCUBE_STARTUP_TIMEOUT when NATS is a port that accepts but is not
// NATS (it hung 30 s and printed the password) and when the source is
// unreachable (it retried forever); its output never shows a password.
func TestCLIStartupFailsFast(t *testing.T) {
	bin := testenv.Binary(t)
	n := testenv.StartNATS(t)
	silent, _ := testenv.SilentPort(t)
	closed := testenv.ClosedPort(t)
	natsWithPW := strings.Replace(n.URL, "nats://", "nats://shadow:"+cliSecret+"@", 1)
	for _, tc := range []struct {
		name, natsURL, source string
		want                  []string
	}{
		{"NATS not NATS", fmt.Sprintf("nats://shadow:%s@127.0.0.1:%d", cliSecret, silent), fmt.Sprintf("postgres://cdc:%s@127.0.0.1:%d/legacy", cliSecret, closed),
			[]string{fmt.Sprintf("nats://shadow:xxxxx@127.0.0.1:%d", silent), "SHADOWCUBE_STARTUP_TIMEOUT"}},
		{"source unreachable", natsWithPW, fmt.Sprintf("postgres://cdc:%s@127.0.0.1:%d/legacy", cliSecret, closed),
			[]string{fmt.Sprintf("host=127.0.0.1 port=%d database=legacy user=cdc", closed), "SHADOWCUBE_STARTUP_TIMEOUT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "cdc")
			cmd.Env = append(cmd.Environ(), "SHADOWCUBE_NATS_URL="+tc.natsURL, "SHADOWCUBE_SOURCE_DATABASE_URL="+tc.source,
				"SHADOWCUBE_STARTUP_TIMEOUT=2s", "SHADOWCUBE_METRICS_ADDR=", "SHADOWCUBE_CDC_SLOT=cli_startup")
			start := time.Now()
			out, err := cmd.CombinedOutput()
			took := time.Since(start)
			if ctx.Err() != nil {
				t.Fatalf("shadowcube cdc still running after 90s; output:\n%s", out)
			}
			if err == nil {
				t.Fatalf("shadowcube cdc exited 0:\n%s", out)
			}
			if took > 20*time.Second { // bound 2s; slack for a loaded machine only
				t.Fatalf("shadowcube cdc failed after %s with a 2s start-up bound:\n%s", took, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), cliSecret) {
				t.Fatalf("password in the output:\n%s", out)
			}
			t.Logf("exited after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(string(out)))
		})
	}
}
