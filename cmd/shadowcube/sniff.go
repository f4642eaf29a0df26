package main

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/net/bpf"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/publisher/sniff"
)

type sniffEnv struct {
	CaptureEnv
	Interface string `envconfig:"SNIFF_INTERFACE" default:"eth0" desc:"network interface to capture on"`
	Port      int    `envconfig:"SNIFF_PORT" min:"0" max:"65535" desc:"TCP port of the legacy service"`
	BPFFile   string `envconfig:"SNIFF_BPF_FILE" desc:"compiled kernel filter, output of tcpdump -ddd EXPR"`
	RingBytes string `envconfig:"SNIFF_RING_BYTES" default:"32MiB" desc:"capture ring shared with the kernel"`
	Unmatched string `envconfig:"SNIFF_UNMATCHED" default:"capture" desc:"capture (as /_other) or skip paths matching no route"`
}

func newSniffCmd() *cobra.Command {
	var service, routesFile, maxBody, iface, bpfFile string
	var port int
	cmd := &cobra.Command{
		Use:   "sniff",
		Short: "Capture the legacy service's HTTP/1.1 traffic passively from a network interface",
		Long: `sniff reads the legacy service's traffic off a network interface, with
nothing in the users' path: it cannot slow down or fail a request. Each TCP
connection is reassembled, HTTP/1.1 requests and answers are read off it
(keep-alive, pipelining, chunked and compressed bodies, trailers) and paired,
and every whole exchange is published like the tap's: same routes, sampling,
user keys, header stripping, body redaction, size caps and RequestEvent,
with source "sniff", on legacy.req.<service>.<route template>.

Needs CAP_NET_RAW (root, or the capability on the binary or container). Sees
plaintext only: run it where the traffic is HTTP, behind the TLS terminator.
What it cannot follow is counted in shadowcube_sniff_dropped_total{reason}
and never published half: lost_segments (the kernel ring overflowed or
packets were never seen), midstream (connections open before sniff started:
one per connection), tls, http2, not_http, unpaired, incomplete, queue_full.
See docs/capture.md for running it on a host, as a container sidecar and in
a Kubernetes pod, and for when to use tap instead.

Flags:
  --interface NAME   interface to capture on (SHADOWCUBE_SNIFF_INTERFACE, default eth0; lo for loopback)
  --port N           the legacy service's TCP port (SHADOWCUBE_SNIFF_PORT); the kernel filter is "tcp port N"
  --bpf FILE         a compiled kernel filter instead, as printed by tcpdump -ddd 'EXPR'
                     (SHADOWCUBE_SNIFF_BPF_FILE); with it --port is optional
  --service NAME     (SHADOWCUBE_TAP_SERVICE)   --routes FILE (SHADOWCUBE_ROUTES_FILE)   --max-body SIZE (SHADOWCUBE_TAP_MAX_BODY)

Environment:
  SHADOWCUBE_SNIFF_INTERFACE    interface (default eth0)
  SHADOWCUBE_SNIFF_PORT         legacy TCP port
  SHADOWCUBE_SNIFF_BPF_FILE     tcpdump -ddd output to use as the kernel filter
  SHADOWCUBE_SNIFF_RING_BYTES   capture ring shared with the kernel (default 32MiB)
  SHADOWCUBE_SNIFF_UNMATCHED    capture (as route /_other, default) or skip paths matching no route` + captureEnvHelp + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var se sniffEnv
			if err := process.Load(&se); err != nil {
				return err
			}
			se.override(service, routesFile, maxBody)
			if iface != "" {
				se.Interface = iface
			}
			if port != 0 {
				se.Port = port
			}
			if bpfFile != "" {
				se.BPFFile = bpfFile
			}
			return runSniff(cmd, se)
		},
	}
	bindCaptureFlags(cmd, &service, &routesFile, &maxBody)
	cmd.Flags().StringVar(&iface, "interface", "", "network interface (SHADOWCUBE_SNIFF_INTERFACE)")
	cmd.Flags().IntVar(&port, "port", 0, "legacy TCP port (SHADOWCUBE_SNIFF_PORT)")
	cmd.Flags().StringVar(&bpfFile, "bpf", "", "kernel filter: file of tcpdump -ddd output (SHADOWCUBE_SNIFF_BPF_FILE)")
	return cmd
}

func runSniff(cmd *cobra.Command, se sniffEnv) error {
	cfg, _, err := se.capturerConfig()
	cfg.Unmatched = se.Unmatched
	ring, rerr := parseSize("SHADOWCUBE_SNIFF_RING_BYTES", se.RingBytes)
	err = errors.Join(err, rerr)
	if se.Port == 0 && se.BPFFile == "" {
		err = errors.Join(err, &process.EnvError{Var: "SHADOWCUBE_SNIFF_PORT", Msg: "required: the legacy service's TCP port (or --port, or a --bpf filter)"})
	}
	var filter []bpf.RawInstruction
	if se.BPFFile != "" {
		f, ferr := os.Open(se.BPFFile)
		if ferr != nil {
			err = errors.Join(err, &process.EnvError{Var: "SHADOWCUBE_SNIFF_BPF_FILE", Value: se.BPFFile, Msg: ferr.Error()})
		} else {
			prog, perr := sniff.ParseBPF(se.BPFFile, f)
			f.Close()
			err = errors.Join(err, perr)
			filter = prog
		}
	}
	settings, serr := se.streamSettings()
	if err = errors.Join(err, serr); err != nil {
		return usageError{err}
	}
	ctx, e, err := setup(cmd, "sniff", true)
	if err != nil {
		return err
	}
	defer e.Close()
	c, err := publisher.New(cfg, publisher.Deps{Logger: e.Log, Registerer: e.Reg})
	if err != nil {
		return err
	}
	defer c.Close()
	capErr := make(chan error, 1)
	go func() { capErr <- c.Run(context.WithoutCancel(ctx)) }()
	defer func() { c.Close(); <-capErr }()
	sn, err := sniff.New(sniff.Config{Port: se.Port}, sniff.Deps{Capturer: c, Logger: e.Log, Registerer: e.Reg})
	if err != nil {
		return err
	}
	live, err := sniff.OpenLive(se.Interface, se.Port, filter, int(ring))
	if err != nil {
		return err
	}
	// NATS is connected in the background, as for the tap: captures made
	// while it is down are dropped and counted.
	var conn atomic.Pointer[natsx.Conn]
	defer func() {
		if cn := conn.Load(); cn != nil {
			cn.Close()
		}
	}()
	lctx, stopLoop := context.WithCancel(ctx)
	var loop sync.WaitGroup
	loop.Add(1)
	go func() {
		defer loop.Done()
		err := c.ConnectLoop(lctx, func(ctx context.Context) (*nats.Conn, error) {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			cn, err := natsx.Connect(actx, e.Common.NATS("shadowcube-sniff"), e.Log)
			if err != nil {
				return nil, err
			}
			if err := publisher.EnsureStream(actx, cn.JS, settings); err != nil {
				cn.Close()
				return nil, err
			}
			conn.Store(cn)
			return cn.NC, nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			e.Log.Error("capture stays down", "err", err)
		}
	}()
	defer func() { stopLoop(); loop.Wait() }()
	e.Log.Info("sniffing", "interface", se.Interface, "port", se.Port, "bpf", se.BPFFile, "service", cfg.Service)
	if err := sn.Run(ctx, live); err != nil {
		return err
	}
	st := sn.Stats()
	e.Log.Info("sniff stopped", "packets", st.Packets, "exchanges", st.Exchanges, "published", st.Published, "dropped", st.Dropped)
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Flush(fctx); err != nil {
		e.Log.Warn("flush", "err", err)
	}
	return nil
}
