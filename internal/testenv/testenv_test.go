package testenv

import (
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/pgcluster"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// TestPostgresLogicalSlot proves the throwaway cluster is configured for
// logical replication: a pgoutput slot can be created and dropped.
func TestPostgresLogicalSlot(t *testing.T) {
	pg := Postgres(t)
	db := pg.NewDatabase(t)
	conn := Connect(t, db)
	ctx := Context(t, time.Minute)
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil || walLevel != "logical" {
		t.Fatalf("wal_level = %q, %v; want logical", walLevel, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int primary key, v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot('testenv_slot', 'pgoutput')"); err != nil {
		t.Fatalf("create slot: %v", err)
	}
	var n int
	conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'testenv_slot'").Scan(&n)
	if n != 1 {
		t.Fatalf("slot not listed")
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot('testenv_slot')"); err != nil {
		t.Fatalf("drop slot: %v", err)
	}
	conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'testenv_slot'").Scan(&n)
	if n != 0 {
		t.Fatalf("slot still listed after drop")
	}
}

func TestPrivateClusterStopStart(t *testing.T) {
	if os.Getenv("SHADOWCUBE_TEST_DATABASE_URL") != "" {
		t.Skip("private clusters need local PostgreSQL binaries; SHADOWCUBE_TEST_DATABASE_URL is set")
	}
	pg := StartCluster(t, pgcluster.Options{})
	ctx := Context(t, time.Minute)
	conn := Connect(t, pg.AdminURL())
	if _, err := conn.Exec(ctx, "CREATE TABLE keep (v int); INSERT INTO keep VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	pg.Cluster.Stop()
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("ping succeeded while the server was stopped")
	}
	if err := pg.Cluster.Start(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	conn2 := Connect(t, pg.AdminURL())
	var v int
	if err := conn2.QueryRow(ctx, "SELECT v FROM keep").Scan(&v); err != nil || v != 7 {
		t.Fatalf("data after restart = %d, %v", v, err)
	}
}

// TestNATSPublishConsumeAck proves the embedded server has JetStream and keeps
// messages across a restart.
func TestNATSPublishConsumeAck(t *testing.T) {
	n := StartNATS(t)
	_, js := n.Connect(t)
	ctx := Context(t, time.Minute)
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	n.Restart(t)
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		// The stream handle predates the restart; look it up again.
		s, err = js.Stream(ctx, "T")
		if err != nil {
			t.Fatal(err)
		}
		c, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range msgs.Messages() {
		got = append(got, string(m.Data()))
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	if len(got) != 1 || got[0] != "hello" {
		t.Fatalf("consumed %q, want [hello]", got)
	}
	info, err := c.Info(ctx)
	if err != nil || info.AckFloor.Stream != 1 || info.NumAckPending != 0 {
		t.Fatalf("ack not recorded: %+v, %v", info, err)
	}
}
