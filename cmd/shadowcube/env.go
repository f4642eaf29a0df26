package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
)

// commonEnvHelp is appended to help texts: the variables every command reads.
const commonEnvHelp = `

Environment (all commands):
  SHADOWCUBE_NATS_URL          NATS URL; empty = embedded JetStream server in process
  SHADOWCUBE_NATS_CREDS        NATS credentials file
  SHADOWCUBE_NATS_NKEY         NATS nkey seed file
  SHADOWCUBE_NATS_TLS_CA, SHADOWCUBE_NATS_TLS_CERT, SHADOWCUBE_NATS_TLS_KEY
                               TLS to NATS (CA bundle; client cert and key for mutual TLS)
  SHADOWCUBE_NATS_DATA_DIR     embedded server data directory (default: user cache dir)
  SHADOWCUBE_NATS_PORT         embedded server port (default: a free port)
  SHADOWCUBE_METRICS_ADDR      /metrics, /healthz, /readyz address (default 127.0.0.1:9090, loopback only;
                               :9090 listens on every interface; empty disables)
  SHADOWCUBE_STARTUP_TIMEOUT   bound of the one connection attempt at start-up to NATS (and to the
                               source database for cdc); once running, connections are retried (default 10s)
  SHADOWCUBE_LOG_FORMAT        text or json (default text)
  SHADOWCUBE_LOG_LEVEL         debug, info, warn or error (default info)
  SHADOWCUBE_SHUTDOWN_TIMEOUT  how long a graceful stop may drain (default 20s)` + replicationEnvHelp

// Env is what a long-running subcommand gets: validated common config, a
// logger, a metrics registry served on SHADOWCUBE_METRICS_ADDR, and a context
// cancelled on SIGINT/SIGTERM. Close releases it all.
type Env struct {
	Common process.Common
	Log    *slog.Logger // Base with the stage attribute (the command's name)
	Base   *slog.Logger // without it: for a process that runs several stages (demo)
	Reg    *prometheus.Registry
	Ops    *process.OpsServer // nil when SHADOWCUBE_METRICS_ADDR is empty
	Stdout io.Writer
	Stderr io.Writer

	component string
	closers   []func()
}

// setup loads the common configuration and starts the process plumbing for
// a component ("cdc", "sync", ...). The returned context ends on a signal.
func setup(cmd *cobra.Command, component string, serveOps bool) (context.Context, *Env, error) {
	e := &Env{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(), component: component}
	if err := process.Load(&e.Common); err != nil {
		return nil, nil, err
	}
	if err := e.Common.Validate(); err != nil {
		return nil, nil, err
	}
	if err := loadSharedStores(); err != nil {
		return nil, nil, err
	}
	// The one place the stage attribute is set: stage packages do not add it.
	e.Base = e.Common.Logger(e.Stderr)
	e.Log = e.Base.With("stage", component)
	e.Reg = process.NewRegistry()
	drain, _ := e.Common.ShutdownTimeout()
	ctx, cancel := process.SignalContext(cmd.Context(), drain, func(why string) {
		e.Log.Error("forced exit", "reason", why)
	})
	e.closers = append(e.closers, cancel)
	if serveOps && e.Common.MetricsAddr != "" {
		ops, err := process.StartOpsServer(e.Common.MetricsAddr, e.Reg, e.Log)
		if err != nil {
			e.Close()
			return nil, nil, err
		}
		e.Ops = ops
		e.closers = append(e.closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ops.Close(ctx)
		})
	}
	return ctx, e, nil
}

// ConnectNATS connects to SHADOWCUBE_NATS_URL (or starts the embedded
// server); the connection is closed (drained) by Close.
func (e *Env) ConnectNATS(ctx context.Context) (*natsx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := e.Common.NATS("shadowcube-" + e.component)
	cfg.Registerer = e.Reg
	conn, err := natsx.Connect(ctx, cfg, e.Log)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, conn.Close)
	if e.Ops != nil {
		e.Ops.AddReady(func(context.Context) error {
			if !conn.NC.IsConnected() {
				return fmt.Errorf("NATS not connected")
			}
			return nil
		})
	}
	return conn, nil
}

// OnClose registers f to run (in reverse order) when the Env closes.
func (e *Env) OnClose(f func()) { e.closers = append(e.closers, f) }

// Close releases everything setup and ConnectNATS started, newest first.
func (e *Env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// splitList splits a comma-separated flag or variable value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
