package cdc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestHeartbeatOwnSchema: the default heartbeat leaves no trace in the
// user's schemas (issue 17 item 4): its table is shadowcube.heartbeat, in a
// schema cdc creates, and heartbeats flow through the stream from there. A
// configured heartbeat table in a schema that does not exist is reported as a
// missing schema, not as a missing privilege; a role that may not create the
// schema is told how to grant it, and works once an administrator made the
// schema and table for it.
func TestHeartbeatOwnSchema(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		e := newEnv(t)
		e.exec(t, "CREATE TABLE app (id int PRIMARY KEY)")
		run := e.start(t, e.config("own"))
		waitHeartbeat(t, e.js)
		e.exec(t, "INSERT INTO app VALUES (1)")
		waitEvents(t, e.js, "cdc.*.public.app", 1, 30*time.Second)
		run.stop(t)
		var public, own string
		if err := e.db.QueryRow(context.Background(),
			"SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_tables WHERE schemaname = 'public'").Scan(&public); err != nil {
			t.Fatal(err)
		}
		if public != "app" {
			t.Fatalf("tables in schema public after cdc ran: %q, want only the user's table app", public)
		}
		if err := e.db.QueryRow(context.Background(),
			"SELECT coalesce(string_agg(schemaname || '.' || tablename, ','), '') FROM pg_tables WHERE schemaname = 'shadowcube'").Scan(&own); err != nil {
			t.Fatal(err)
		}
		if own != DefaultHeartbeatTable {
			t.Fatalf("tables in schema shadowcube: %q, want %s", own, DefaultHeartbeatTable)
		}
	})
	t.Run("missing schema", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.config("noschema")
		cfg.HeartbeatTable = "nosuch.beat"
		err := e.runErr(t, cfg)
		wantErr(t, err, ErrMissingSchema, `schema "nosuch"`, "does not exist", "CREATE SCHEMA")
		if errors.Is(err, ErrPrivilege) || strings.Contains(err.Error(), "privilege") {
			t.Fatalf("a missing schema reported as a missing privilege: %v", err)
		}
	})
	t.Run("role without CREATE", func(t *testing.T) {
		e := newEnv(t)
		e.exec(t, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_limited') THEN CREATE ROLE cdc_limited LOGIN REPLICATION; END IF; END $$")
		e.exec(t, "CREATE TABLE app (id int PRIMARY KEY)")
		e.exec(t, "INSERT INTO app VALUES (1)")
		e.exec(t, "GRANT SELECT ON app TO cdc_limited")
		cfg := e.config("limited")
		cfg.DatabaseURL = withUser(t, e.url, "cdc_limited")
		wantErr(t, e.runErr(t, cfg), ErrPrivilege, `create schema "shadowcube"`, "GRANT CREATE ON DATABASE", `CREATE SCHEMA "shadowcube" AUTHORIZATION "cdc_limited"`)
		// An administrator makes the schema, the table and the publication;
		// the role has no CREATE anywhere and still runs.
		e.exec(t, "CREATE SCHEMA shadowcube")
		e.exec(t, "CREATE TABLE shadowcube.heartbeat (slot text PRIMARY KEY, beat_at timestamptz NOT NULL)")
		e.exec(t, "GRANT USAGE ON SCHEMA shadowcube TO cdc_limited")
		e.exec(t, "GRANT SELECT, INSERT, UPDATE ON shadowcube.heartbeat TO cdc_limited")
		e.exec(t, "CREATE PUBLICATION pub_limited FOR TABLE app, shadowcube.heartbeat")
		run := e.start(t, cfg)
		waitHeartbeat(t, e.js)
		waitEvents(t, e.js, "cdc.*.public.app", 1, 30*time.Second)
		run.stop(t)
	})
}
