package wiring

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/cdc"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/shadow"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// TestStageContract checks the stage contract on every stage the builders
// make: New does no I/O (every database and cube address here is
// unreachable, and New succeeds), a second stage of a kind on one registry
// is an error (never a panic), Close is idempotent before Run, and Run
// after Close fails without doing anything.
func TestStageContract(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	conn, err := natsx.Connect(ctx, natsx.Config{URL: n.URL, Name: "contract"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	dead := "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"
	dir := t.TempDir()
	routesFile := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routesFile, []byte("services:\n  - name: s\n    cube_url: http://127.0.0.1:1\n    routes:\n      - route: /a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mapping, err := consumers.ParseMapping("m.yaml", []byte("source: {database_url_env: SRC, slot: s}\ntargets:\n  - name: t\n    database_url_env: T\n    tables:\n      - {source: public.a, key: [id]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	builders := map[string]func(p *Process) (Stage, error){
		"cdc": func(p *Process) (Stage, error) {
			return NewCDC(p, conn, cdc.Config{DatabaseURL: dead})
		},
		"sync": func(p *Process) (Stage, error) {
			return NewSync(p, conn, &SyncEnv{}, &Mapping{Mapping: mapping, SourceURL: dead, TargetURLs: map[string]string{"t": dead}})
		},
		"shadow": func(p *Process) (Stage, error) {
			rf, err := shadow.LoadRoutes(routesFile)
			if err != nil {
				return nil, err
			}
			return NewShadow(p, conn, shadow.Config{Routes: rf})
		},
		"tap": func(p *Process) (Stage, error) {
			te := TapEnv{Listen: ":0", Upstream: "http://127.0.0.1:1", LegacyWorkers: 1}
			te.Service, te.MaxBody, te.QueueSize, te.QueueBytes = "s", "1MiB", 16, "1MiB"
			te.UserKeySecret = strings.Repeat("k", 32)
			return NewTap(te, TapDeps{Logger: p.Log, Registerer: p.Reg, Connect: func(context.Context) (*natsx.Conn, error) { return conn, nil }, SharedConn: true})
		},
	}
	for name, build := range builders {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			p := &Process{Log: testenv.Logger(t), Base: testenv.Logger(t), Reg: reg}
			s, err := build(p)
			if err != nil {
				t.Fatalf("New with unreachable addresses: %v (New must do no I/O)", err)
			}
			if _, err := build(p); err == nil || !strings.Contains(err.Error(), "register") {
				t.Errorf("second %s on one registry: err %v, want a registration conflict", name, err)
			}
			for i := range 2 {
				if err := s.Close(); err != nil {
					t.Fatalf("Close #%d before Run: %v", i+1, err)
				}
			}
			runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := s.Run(runCtx); err == nil {
				t.Fatal("Run after Close returned nil")
			}
		})
	}
	// The capturer alone: publisher.New with no connection is detached.
	c, err := publisher.New(publisher.Config{Service: "s", Privacy: publisher.PrivacyConfig{Secret: []byte(strings.Repeat("k", 32))}}, publisher.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(c.Close(), c.Close()); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctx); err == nil {
		t.Fatal("capturer Run after Close returned nil")
	}
}
