package cdc

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/pgcluster"
	"github.com/heal7/shadowcube/internal/testenv"
)

const secret = "s3cretPW"

// TestStartupFailsFast (issue 11 item 4, issue 19 item 5): with a source
// that cannot be reached, Run makes one attempt bounded by StartupTimeout
// and returns an error naming the source without its password and saying
// what to check. Before, Run retried forever (the closed port, with a WARN
// line per attempt) or hung in the connect (the port that is not
// PostgreSQL).
func TestStartupFailsFast(t *testing.T) {
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	closed := testenv.ClosedPort(t)
	silent, accepted := testenv.SilentPort(t)
	const bound = 2 * time.Second
	for _, tc := range []struct {
		name string
		dsn  string
		port int
	}{
		{"closed port", fmt.Sprintf("postgres://cdc:%s@127.0.0.1:%d/legacy?sslmode=disable&application_name=%s", secret, closed, secret), closed},
		{"not PostgreSQL", fmt.Sprintf("postgres://cdc:%s@127.0.0.1:%d/legacy?sslmode=disable", secret, silent), silent},
		{"keyword DSN", fmt.Sprintf("host=127.0.0.1 port=%d user=cdc password=%s dbname=legacy sslmode=disable", closed, secret), closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, buf := testenv.CaptureLogger(t)
			r, err := New(Config{DatabaseURL: tc.dsn, Slot: "startup", StartupTimeout: bound}, Deps{JetStream: js, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			err = r.Run(ctx)
			took := time.Since(start)
			if ctx.Err() != nil {
				t.Fatalf("Run still retrying after 60s (err %v); log:\n%s", err, buf.String())
			}
			if err == nil {
				t.Fatal("Run returned nil for an unreachable source")
			}
			if took > bound+15*time.Second { // slack for a loaded machine only
				t.Fatalf("Run failed after %s, bound %s", took, bound)
			}
			msg := err.Error()
			for _, want := range []string{fmt.Sprintf("host=127.0.0.1 port=%d database=legacy user=cdc", tc.port),
				"start-up failed", "pg_hba.conf", "SHADOWCUBE_SOURCE_DATABASE_URL", "SHADOWCUBE_STARTUP_TIMEOUT"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, secret) || strings.Contains(buf.String(), secret) {
				t.Fatalf("password in error or log:\nerror: %s\nlog: %s", msg, buf.String())
			}
			if strings.Contains(buf.String(), "retrying") {
				t.Fatalf("start-up retried:\n%s", buf.String())
			}
			t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
		})
	}
	if accepted() == 0 {
		t.Fatal("the silent port accepted no connection: the not-PostgreSQL case did not reach it")
	}
}

// TestSourceURLParseErrorRedacted: a source URL that does not parse is
// reported without any of its secrets (pgx masks only the password).
func TestSourceURLParseErrorRedacted(t *testing.T) {
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	for _, dsn := range []string{
		"postgres://cdc:" + secret + "@127.0.0.1:notaport/legacy",
		"postgres://cdc@127.0.0.1/legacy?sslpassword=" + secret + "&sslmode=bogus",
		"host=127.0.0.1 password=" + secret + " port=x",
	} {
		log, buf := testenv.CaptureLogger(t)
		r, err := New(Config{DatabaseURL: dsn, Slot: "parse"}, Deps{JetStream: js, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(testenv.Context(t, time.Minute))
		if err == nil || !strings.Contains(err.Error(), "SHADOWCUBE_SOURCE_DATABASE_URL") {
			t.Fatalf("Run error %v does not name SHADOWCUBE_SOURCE_DATABASE_URL", err)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(buf.String(), secret) {
			t.Fatalf("secret in error or log:\nerror: %v\nlog: %s", err, buf.String())
		}
		t.Log(err)
	}
}

// TestSourceRestartRetried: once started, a reader survives a restart of the
// source server: each failed attempt while the server is down is counted
// (shadowcube_cdc_session_failures_total) and logged once, the reader
// streams again after the restart, and no log line shows the password of
// the source URL.
func TestSourceRestartRetried(t *testing.T) {
	pg := testenv.StartCluster(t, pgcluster.Options{})
	u, err := url.Parse(pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), secret) // trust auth: ignored by the server, must not be logged
	e := &env{url: u.String(), nats: testenv.StartNATS(t)}
	_, e.js = e.nats.Connect(t)
	e.db = testenv.Connect(t, e.url)
	e.exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	cfg := e.config("restart")
	cfg.RetryMax = time.Second
	reg := prometheus.NewRegistry()
	log, buf := testenv.CaptureLogger(t)
	r, err := New(cfg, Deps{JetStream: e.js, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	e.exec(t, "INSERT INTO t VALUES (1)")
	waitEvents(t, e.js, "cdc.*.public.t", 1, 60*time.Second)

	pg.Cluster.Stop()
	// Wait for attempts made while the server is down, not only the end of
	// the session the stop broke.
	deadline := time.Now().Add(60 * time.Second)
	for testenv.Metric(t, reg, "shadowcube_cdc_session_failures_total") < 3 {
		select {
		case err := <-done:
			t.Fatalf("Run returned while the source was down: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 failed attempts within 60s of the stop; log:\n%s", buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	startCtx, startCancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer startCancel()
	if err := pg.Cluster.Start(startCtx); err != nil {
		t.Fatalf("restart the source: %v", err)
	}
	e.db = testenv.Connect(t, e.url)
	e.exec(t, "INSERT INTO t VALUES (2)")
	gs := waitEvents(t, e.js, "cdc.*.public.t", 2, 90*time.Second)
	if last := gs[len(gs)-1].ev.New["id"]; last == nil || *last != "2" {
		t.Fatalf("last event after the restart: %s", rowString(gs[len(gs)-1].ev.New))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v after cancel", err)
	}
	failures := testenv.Metric(t, reg, "shadowcube_cdc_session_failures_total")
	logs := buf.String()
	if lines := strings.Count(logs, "replication session ended; retrying"); lines != int(failures) {
		t.Fatalf("%d retry log lines, %v failures counted", lines, failures)
	}
	if strings.Contains(logs, secret) {
		t.Fatalf("password in the log:\n%s", logs)
	}
	t.Logf("streamed again after the restart; %v failed attempts counted and logged", failures)
}
