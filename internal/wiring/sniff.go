package wiring

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/net/bpf"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/publisher/sniff"
)

// SniffEnv is the configuration of `shadowcube sniff`.
type SniffEnv struct {
	CaptureEnv
	Interface string `envconfig:"SNIFF_INTERFACE" flag:"interface" default:"eth0" desc:"network interface to capture on"`
	Port      int    `envconfig:"SNIFF_PORT" flag:"port" min:"0" max:"65535" desc:"TCP port of the legacy service"`
	BPFFile   string `envconfig:"SNIFF_BPF_FILE" flag:"bpf" desc:"compiled kernel filter, output of tcpdump -ddd EXPR"`
	RingBytes string `envconfig:"SNIFF_RING_BYTES" default:"32MiB" desc:"capture ring shared with the kernel"`
	Unmatched string `envconfig:"SNIFF_UNMATCHED" default:"capture" desc:"capture (as /_other) or skip paths matching no route"`
}

// sniffSetup is what Check reads and checks.
type sniffSetup struct {
	cfg      publisher.Config
	settings publisher.StreamSettings
	filter   []bpf.RawInstruction
	ring     int64
}

// Check validates se and loads its routes and filter files.
func (se *SniffEnv) Check() error {
	_, err := se.setup()
	return err
}

func (se *SniffEnv) setup() (sniffSetup, error) {
	var s sniffSetup
	cfg, _, err := se.CapturerConfig()
	cfg.Unmatched = se.Unmatched
	s.cfg = cfg
	ring, rerr := ParseSize("SHADOWCUBE_SNIFF_RING_BYTES", se.RingBytes)
	s.ring = ring
	err = errors.Join(err, rerr)
	if se.Port == 0 && se.BPFFile == "" {
		err = errors.Join(err, &process.EnvError{Var: "SHADOWCUBE_SNIFF_PORT", Msg: "required: the legacy service's TCP port (or --port, or a --bpf filter)"})
	}
	if se.BPFFile != "" {
		f, ferr := os.Open(se.BPFFile)
		if ferr != nil {
			err = errors.Join(err, &process.EnvError{Var: "SHADOWCUBE_SNIFF_BPF_FILE", Value: se.BPFFile, Msg: ferr.Error()})
		} else {
			prog, perr := sniff.ParseBPF(se.BPFFile, f)
			f.Close()
			err = errors.Join(err, perr)
			s.filter = prog
		}
	}
	settings, serr := se.StreamSettings()
	s.settings = settings
	return s, errors.Join(err, serr)
}

// RunSniff is `shadowcube sniff`: capture from the interface until ctx
// ends, NATS connected in the background as for the tap (captures made
// while it is down are dropped and counted), then drain.
func RunSniff(ctx context.Context, p *Process, se SniffEnv) error {
	s, err := se.setup()
	if err != nil {
		return err
	}
	c, err := publisher.New(s.cfg, publisher.Deps{Logger: p.Log, Registerer: p.Reg})
	if err != nil {
		return err
	}
	capErr := make(chan error, 1)
	go func() { capErr <- c.Run(context.WithoutCancel(ctx)) }()
	var conn *natsx.Conn
	stopLoop, wait := func() {}, func() {}
	defer func() { // the capturer drains before its connection closes
		stopLoop()
		wait()
		c.Close()
		<-capErr
		if conn != nil {
			conn.Close()
		}
	}()
	sn, err := sniff.New(sniff.Config{Port: se.Port}, sniff.Deps{Capturer: c, Logger: p.Log, Registerer: p.Reg})
	if err != nil {
		return err
	}
	live, err := sniff.OpenLive(se.Interface, se.Port, s.filter, int(s.ring))
	if err != nil {
		return err
	}
	lctx, cancelLoop := context.WithCancel(ctx)
	defer cancelLoop()
	stopLoop = cancelLoop
	wait = attachInBackground(lctx, c, func(ctx context.Context) (*natsx.Conn, error) {
		return natsx.Connect(ctx, p.Common.NATS("shadowcube-sniff"), p.Log)
	}, false, s.settings, p.Log, nil, func(cn *natsx.Conn) { conn = cn })
	p.Log.Info("sniffing", "interface", se.Interface, "port", se.Port, "bpf", se.BPFFile, "service", s.cfg.Service)
	if err := sn.Run(ctx, live); err != nil {
		return err
	}
	st := sn.Stats()
	p.Log.Info("sniff stopped", "packets", st.Packets, "exchanges", st.Exchanges, "published", st.Published, "dropped", st.Dropped)
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Flush(fctx); err != nil {
		p.Log.Warn("flush", "err", err)
	}
	return nil
}
