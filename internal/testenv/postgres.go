package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/internal/pgcluster"
)

var (
	sharedMu      sync.Mutex
	shared        *pgcluster.Cluster
	sharedErr     error // only pgcluster.ErrNoBinaries is kept: a failed start is retried by the next test
	dbCounter     atomic.Int64
	clusterOwners []*pgcluster.Cluster
	// infraUp is set once a PostgreSQL cluster or NATS server of this test
	// process ran: from then on a start failure is a test failure, never a
	// skip.
	infraUp atomic.Bool
	// startCluster starts a cluster; tests of this package replace it to
	// make starts fail.
	startCluster = pgcluster.Start
)

// Run runs the package's tests and then stops every cluster the harness
// started. Call it from TestMain.
func Run(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, c := range clusterOwners {
		c.Close()
	}
	clusterOwners = nil
	shared = nil
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	return code
}

// InCI reports whether the tests run under CI (CI=true), where missing
// infrastructure is a failure, not a skip.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// unavailable skips the test, or fails it under CI.
func unavailable(tb testing.TB, what string, err error) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s unavailable under CI=true (tests must not skip): %v", what, err)
	}
	tb.Skipf("%s unavailable, skipping: %v", what, err)
}

// startFailed reports infrastructure that is installed but did not start
// (a timeout on a loaded machine, a port taken, a crash). Only missing
// PostgreSQL binaries make a test skip: a server that does not start is a
// failure of the test, whatever ran before, so a slow start can never turn
// the rest of a package's tests into skips.
func startFailed(tb testing.TB, what string, err error) {
	tb.Helper()
	if errors.Is(err, pgcluster.ErrNoBinaries) {
		unavailable(tb, what, err)
		return
	}
	tb.Fatalf("%s did not start: %v", what, err)
}

// PG is a PostgreSQL server for tests: the shared throwaway cluster, a private
// one (StartCluster) or the server of SHADOWCUBE_TEST_DATABASE_URL.
type PG struct {
	Cluster *pgcluster.Cluster // nil when using SHADOWCUBE_TEST_DATABASE_URL
	admin   string             // URL of a database to run CREATE DATABASE from
}

// Postgres returns the package's shared PostgreSQL, starting it on first use.
func Postgres(tb testing.TB) *PG {
	tb.Helper()
	if u := os.Getenv("SHADOWCUBE_TEST_DATABASE_URL"); u != "" {
		return &PG{admin: u}
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedErr != nil {
		unavailable(tb, "PostgreSQL", sharedErr)
	}
	if shared == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := startCluster(ctx, pgcluster.Options{})
		if err != nil {
			if errors.Is(err, pgcluster.ErrNoBinaries) {
				sharedErr = err // missing binaries stay missing; nothing else is cached
			}
			startFailed(tb, "PostgreSQL", err)
		}
		shared = c
		clusterOwners = append(clusterOwners, shared)
		infraUp.Store(true)
	}
	return &PG{Cluster: shared, admin: shared.URL("postgres")}
}

// StartCluster starts a private cluster for tests that stop, kill or restart
// the server. It is closed when the test ends.
func StartCluster(tb testing.TB, opts pgcluster.Options) *PG {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, opts)
	if err != nil {
		startFailed(tb, "PostgreSQL", err)
	}
	infraUp.Store(true)
	tb.Cleanup(c.Close)
	return &PG{Cluster: c, admin: c.URL("postgres")}
}

// AdminURL is a superuser URL to the server's maintenance database.
func (p *PG) AdminURL() string { return p.admin }

// NewDatabase creates an empty database for this test and returns its URL.
// It is dropped (with its replication slots) when the test ends.
func (p *PG) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.admin)
	if err != nil {
		tb.Fatalf("testenv: connect to %s: %v", redact(p.admin), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("testenv: create database %s: %v", name, err)
	}
	u, err := url.Parse(p.admin)
	if err != nil {
		tb.Fatalf("testenv: parse %s: %v", redact(p.admin), err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	tb.Cleanup(func() { p.dropDatabase(tb, name) })
	return dbURL
}

func (p *PG) dropDatabase(tb testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.admin)
	if err != nil {
		tb.Logf("testenv: drop database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	// Slots pin the database; drop them first (terminating their walsenders).
	_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name)
	for i := 0; i < 50; i++ {
		_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, name)
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		tb.Logf("testenv: drop database %s: %v", name, err)
	}
}

// Connect opens a pgx connection closed at the end of the test.
func Connect(tb testing.TB, dbURL string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		tb.Fatalf("testenv: connect to %s: %v", redact(dbURL), err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<bad url>"
	}
	return p.Redacted()
}
