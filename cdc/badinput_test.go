package cdc

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/pgcluster"
	"github.com/heal7/shadowcube/internal/testenv"
)

func wantErr(t *testing.T, err, target error, phrases ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
	for _, p := range phrases {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not say %q", err, p)
		}
	}
}

func withUser(t *testing.T, dbURL, user string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	return u.String()
}

func TestBadInput(t *testing.T) {
	t.Run("config", func(t *testing.T) {
		_, err := New(Config{Slot: "Bad-Slot", HeartbeatMode: "sometimes", Tables: []string{"nodot"}}, Deps{})
		for _, p := range []string{"SHADOWCUBE_SOURCE_DATABASE_URL", `slot "Bad-Slot"`, `heartbeat mode "sometimes"`, `table "nodot"`} {
			if err == nil || !strings.Contains(err.Error(), p) {
				t.Fatalf("New error %v does not say %q", err, p)
			}
		}
	})
	t.Run("table without key", func(t *testing.T) {
		e := newEnv(t)
		e.exec(t, "CREATE TABLE good (id int PRIMARY KEY)")
		e.exec(t, "CREATE TABLE nokey (v int)")
		e.exec(t, "CREATE TABLE nothing (id int PRIMARY KEY)")
		e.exec(t, "ALTER TABLE nothing REPLICA IDENTITY NOTHING")
		e.exec(t, "CREATE TABLE fullid (v int)")
		e.exec(t, "ALTER TABLE fullid REPLICA IDENTITY FULL")
		err := e.runErr(t, e.config("nokey"))
		wantErr(t, err, ErrNoKey, `"public"."nokey" has no primary key`, `ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL`, `"public"."nothing" has REPLICA IDENTITY NOTHING`)
		if strings.Contains(err.Error(), "good") || strings.Contains(err.Error(), "fullid") {
			t.Fatalf("error blames a table with a key: %v", err)
		}
	})
	t.Run("no replication privilege", func(t *testing.T) {
		e := newEnv(t)
		e.exec(t, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_norepl') THEN CREATE ROLE cdc_norepl LOGIN; END IF; END $$")
		cfg := e.config("norepl")
		cfg.DatabaseURL = withUser(t, e.url, "cdc_norepl")
		wantErr(t, e.runErr(t, cfg), ErrPrivilege, "REPLICATION", "ALTER ROLE")
	})
	t.Run("missing publication privileges", func(t *testing.T) {
		e := newEnv(t)
		e.exec(t, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_repl') THEN CREATE ROLE cdc_repl LOGIN REPLICATION; END IF; END $$")
		e.exec(t, "CREATE TABLE owned_by_admin (id int PRIMARY KEY)")
		e.exec(t, "GRANT CREATE ON SCHEMA public TO cdc_repl")
		var db string
		e.db.QueryRow(context.Background(), "SELECT current_database()").Scan(&db)
		e.exec(t, "GRANT CREATE ON DATABASE "+db+" TO cdc_repl")
		cfg := e.config("nopub")
		cfg.DatabaseURL = withUser(t, e.url, "cdc_repl")
		cfg.Tables = []string{"public.owned_by_admin"}
		wantErr(t, e.runErr(t, cfg), ErrPublication, `CREATE PUBLICATION "pub_nopub" FOR TABLE "public"."owned_by_admin"`, "must be owner", "ownership")
		// FOR ALL TABLES needs a superuser.
		cfg.Tables = nil
		wantErr(t, e.runErr(t, cfg), ErrPublication, "FOR ALL TABLES", "superuser")
		// An existing publication that lacks a configured table.
		e.exec(t, "CREATE PUBLICATION pub_nopub FOR TABLE "+DefaultHeartbeatTable)
		cfg.Tables = []string{"public.owned_by_admin"}
		wantErr(t, e.runErr(t, cfg), ErrPublication, "does not publish public.owned_by_admin", "ALTER PUBLICATION")
	})
	t.Run("slot dropped after streaming", func(t *testing.T) {
		e := newEnv(t)
		e.exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
		cfg := e.config("dropped")
		run := e.start(t, cfg)
		waitHeartbeat(t, e.js)
		// While running: the slot check notices and Run fails.
		e.exec(t, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'dropped'")
		dropSlot(t, e, "dropped")
		select {
		case <-run.done:
			wantErr(t, run.err, ErrSlotLost, "--resnapshot")
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not fail within 30s of its slot being dropped")
		}
		// On start: the slot is missing but the reader streamed from it.
		wantErr(t, e.runErr(t, cfg), ErrSlotLost, "missing", "--resnapshot")
		// --resnapshot recovers.
		cfg.Resnapshot = true
		run = e.start(t, cfg)
		e.exec(t, "INSERT INTO t VALUES (1)")
		waitEvents(t, e.js, "cdc.*.public.t", 1, 30*time.Second)
		run.stop(t)
	})
	t.Run("slot without state", func(t *testing.T) {
		e := newEnv(t)
		e.exec(t, "SELECT pg_create_logical_replication_slot('foreign', 'pgoutput')")
		wantErr(t, e.runErr(t, e.config("foreign")), ErrSlotState, "no record of its snapshot", "--resnapshot")
	})
}

func dropSlot(t *testing.T, e *env, slot string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := e.db.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop slot %s: %v", slot, err)
		}
		e.db.Exec(context.Background(), "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1", slot)
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBadServer needs private clusters: wal_level=replica, and a slot
// invalidated by max_slot_wal_keep_size.
func TestBadServer(t *testing.T) {
	t.Run("wal_level replica", func(t *testing.T) {
		pg := testenv.StartCluster(t, pgcluster.Options{Settings: map[string]string{"wal_level": "replica"}})
		e := &env{url: pg.NewDatabase(t), nats: testenv.StartNATS(t)}
		_, e.js = e.nats.Connect(t)
		wantErr(t, e.runErr(t, e.config("replica")), ErrWALLevel, "wal_level = replica", "wal_level = logical", "restart PostgreSQL")
	})
	t.Run("slot invalidated", func(t *testing.T) {
		pg := testenv.StartCluster(t, pgcluster.Options{Settings: map[string]string{"max_slot_wal_keep_size": "1MB", "min_wal_size": "32MB", "max_wal_size": "32MB"}})
		e := &env{url: pg.NewDatabase(t), nats: testenv.StartNATS(t)}
		_, e.js = e.nats.Connect(t)
		e.db = testenv.Connect(t, e.url)
		e.exec(t, "CREATE TABLE t (id int PRIMARY KEY, pad text)")
		cfg := e.config("lost")
		run := e.start(t, cfg)
		waitHeartbeat(t, e.js)
		run.stop(t)
		for i := 0; i < 8; i++ {
			e.exec(t, "INSERT INTO t SELECT g, repeat('x', 1000) FROM generate_series($1::int * 2000, $1::int * 2000 + 1999) g", i)
			e.exec(t, "SELECT pg_switch_wal()")
		}
		e.exec(t, "CHECKPOINT")
		var status string
		e.db.QueryRow(context.Background(), "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost'").Scan(&status)
		if status != "lost" {
			t.Fatalf("wal_status = %q after writing 16 MB of WAL with max_slot_wal_keep_size = 1MB; the test needs lost", status)
		}
		wantErr(t, e.runErr(t, cfg), ErrSlotLost, "wal_status = lost", "--resnapshot")
	})
}
