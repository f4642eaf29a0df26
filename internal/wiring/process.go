package wiring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
)

// Process is what a command gets: validated common configuration, a logger
// carrying the stage attribute (set here, once per process), a metrics
// registry served on SHADOWCUBE_METRICS_ADDR, and a context cancelled on
// SIGINT/SIGTERM. Close releases it all, newest first.
type Process struct {
	Common process.Common
	Log    *slog.Logger // Base with the stage attribute (the command's name)
	Base   *slog.Logger // without it: for a process that runs several stages (demo)
	Reg    *prometheus.Registry
	Ops    *process.OpsServer // nil when SHADOWCUBE_METRICS_ADDR is empty or not served
	Stdout io.Writer
	Stderr io.Writer

	name    string
	closers []func()
	root    *Process // set on a Stage view: closers belong to the root
}

// Child returns a Process like p with closers of its own: what the
// builders register on it is released by its Close, not p's (the demo
// closes its stores before its NATS connection).
func (p *Process) Child() *Process {
	v := *p
	v.closers, v.root = nil, nil
	return &v
}

// Stage returns a view of p for one of several stages in one process (the
// demo): its Log carries stage=name; OnClose and Close act on p.
func (p *Process) Stage(name string) *Process {
	v := *p
	v.closers, v.name = nil, name
	v.Log = p.Base.With("stage", name)
	v.root = p
	if p.root != nil {
		v.root = p.root
	}
	return &v
}

// Start loads the common configuration and the shared stream and bucket
// settings, and starts the process plumbing for the stage called name
// ("cdc", "sync", ...). The returned context ends on a signal.
func Start(ctx context.Context, name string, stdout, stderr io.Writer, serveOps bool) (context.Context, *Process, error) {
	p := &Process{Stdout: stdout, Stderr: stderr, name: name}
	if err := process.Load(&p.Common); err != nil {
		return nil, nil, err
	}
	if err := p.Common.Validate(); err != nil {
		return nil, nil, err
	}
	if err := LoadSharedStores(); err != nil {
		return nil, nil, err
	}
	// The one place the stage attribute is set: stage packages do not add it.
	p.Base = p.Common.Logger(p.Stderr)
	p.Log = p.Base.With("stage", name)
	p.Reg = process.NewRegistry()
	ctx, cancel := process.SignalContext(ctx, p.ShutdownTimeout(), func(why string) {
		p.Log.Error("forced exit", "reason", why)
	})
	p.closers = append(p.closers, cancel)
	if serveOps && p.Common.MetricsAddr != "" {
		ops, err := process.StartOpsServer(p.Common.MetricsAddr, p.Reg, p.Log)
		if err != nil {
			p.Close()
			return nil, nil, err
		}
		p.Ops = ops
		p.closers = append(p.closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ops.Close(ctx)
		})
	}
	return ctx, p, nil
}

// ShutdownTimeout is SHADOWCUBE_SHUTDOWN_TIMEOUT: how long a graceful stop
// may drain (validated by Start).
func (p *Process) ShutdownTimeout() time.Duration {
	d, _ := p.Common.ShutdownTimeout()
	return d
}

// StartupTimeout is SHADOWCUBE_STARTUP_TIMEOUT (validated by Start).
func (p *Process) StartupTimeout() time.Duration {
	d, _ := p.Common.StartupTimeout()
	return d
}

// ConnectNATS connects to SHADOWCUBE_NATS_URL (or starts the embedded
// server); the connection is closed (drained) by Close, and /readyz
// reports it.
func (p *Process) ConnectNATS(ctx context.Context) (*natsx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := p.Common.NATS("shadowcube-" + p.name)
	cfg.Registerer = p.Reg
	conn, err := natsx.Connect(ctx, cfg, p.Log)
	if err != nil {
		return nil, err
	}
	p.OnClose(conn.Close)
	if p.Ops != nil {
		p.Ops.AddReady(func(context.Context) error {
			if !conn.NC.IsConnected() {
				return fmt.Errorf("NATS not connected")
			}
			return nil
		})
	}
	return conn, nil
}

// OnClose registers f to run (in reverse order) when the Process closes.
func (p *Process) OnClose(f func()) {
	if p.root != nil {
		p.root.OnClose(f)
		return
	}
	p.closers = append(p.closers, f)
}

// Close releases everything Start and ConnectNATS started, newest first.
func (p *Process) Close() {
	if p.root != nil {
		p.root.Close()
		return
	}
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

// SharedStores are the settings of stream DLQ (every stage dead-letters,
// none owns it) and of the shadowcube KV bucket (sync and flags write it,
// shadow and tap read it); every command reads them. A stage creates them
// with these settings when they are missing and never updates them.
type SharedStores struct {
	DLQReplicas int           `envconfig:"DLQ_REPLICAS" min:"1" max:"5" default:"1" desc:"replicas stream DLQ is created with by the first stage that dead-letters; an existing DLQ is never changed (nats stream edit DLQ)"`
	DLQStorage  string        `envconfig:"DLQ_STORAGE" default:"file" desc:"storage of stream DLQ when created: file or memory"`
	DLQMaxAge   time.Duration `envconfig:"DLQ_MAX_AGE" min:"0s" default:"0" desc:"retention of stream DLQ when created (0 = unlimited)"`
	DLQMaxBytes int64         `envconfig:"DLQ_MAX_BYTES" min:"0" default:"0" desc:"size limit of stream DLQ when created (0 = unlimited)"`
	KVReplicas  int           `envconfig:"KV_REPLICAS" min:"1" max:"5" default:"1" desc:"replicas the shadowcube KV bucket (rollout flags, sync watermarks) is created with by the first stage that opens it; never changed after"`
	KVStorage   string        `envconfig:"KV_STORAGE" default:"file" desc:"storage of the KV bucket when created: file or memory"`
	KVMaxBytes  int64         `envconfig:"KV_MAX_BYTES" min:"0" default:"0" desc:"size limit of the KV bucket when created (0 = unlimited)"`
}

// LoadSharedStores reads SharedStores and hands it to natsx.
func LoadSharedStores() error {
	var env SharedStores
	if err := process.Load(&env); err != nil {
		return err
	}
	if err := errors.Join(StorageValue("SHADOWCUBE_DLQ_STORAGE", env.DLQStorage), StorageValue("SHADOWCUBE_KV_STORAGE", env.KVStorage)); err != nil {
		return err
	}
	return natsx.SetSharedSettings(
		natsx.KVSettings{Replicas: env.KVReplicas, Storage: env.KVStorage, MaxBytes: env.KVMaxBytes},
		natsx.StreamSettings{Replicas: env.DLQReplicas, Storage: env.DLQStorage, MaxAge: env.DLQMaxAge, MaxBytes: env.DLQMaxBytes})
}

// CommonHelp documents the variables every command reads, generated from
// the desc tags of process.Common and SharedStores.
func CommonHelp() string {
	return EnvHelp("Environment (all commands)", new(process.Common), new(SharedStores))
}

// StorageValue checks a SHADOWCUBE_*_STORAGE value.
func StorageValue(name, v string) error {
	switch strings.ToLower(v) {
	case "", "file", "memory":
		return nil
	}
	return &process.EnvError{Var: name, Value: v, Msg: "want file or memory"}
}

// ParseSize reads "1048576", "512KiB", "1MiB", "2GiB" (KB/MB/GB are the
// same binary units); name is the variable, for the error.
func ParseSize(name, s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, &process.EnvError{Var: name, Value: s, Msg: "want a size like 1048576, 512KiB or 1MiB"}
	}
	return n * mult, nil
}
