package sniff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/stage"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
)

// Reasons an exchange is not published, the values of the reason label of
// shadowcube_sniff_dropped_total. Nothing is ever published half: an
// exchange is published whole or counted here.
const (
	ReasonLostSegments = "lost_segments" // a gap in the TCP stream (capture dropped packets, or they were never seen)
	ReasonMidstream    = "midstream"     // the connection was open before capture started (no SYN seen): one per connection
	ReasonTLS          = "tls"           // TLS: sniff sees plaintext only (run it behind the TLS terminator)
	ReasonHTTP2        = "http2"         // HTTP/2 with prior knowledge: only HTTP/1.x is followed
	ReasonNotHTTP      = "not_http"      // bytes that are not HTTP/1.x (or a framing error)
	ReasonUnpaired     = "unpaired"      // an answer with no request, or one sent before its request had ended
	ReasonIncomplete   = "incomplete"    // the connection ended (or idled out) inside an exchange
	ReasonQueueFull    = "queue_full"    // the capturer's queue was full (also in shadowcube_tap_dropped_total)
)

// Defaults of Config.
const (
	DefaultGapTimeout  = 2 * time.Second
	DefaultIdleTimeout = 5 * time.Minute
	DefaultMaxPages    = 1 << 15 // pages of ~1.9 KiB buffered out of order, in all: ~60 MiB
)

// Config configures a Sniffer.
type Config struct {
	// Port is the legacy service's TCP port. A connection whose SYN was
	// seen needs none (the SYN's sender is the client); others are judged
	// by it. 0: packets of every port are followed.
	Port int
	// Source is the events' source: schemas.SourceSniff (default) or
	// schemas.SourceImport (pcap import).
	Source schemas.Source
	// Wait makes publishing wait for queue space instead of dropping (import).
	Wait bool
	// GapTimeout is how long out-of-order data waits for a missing segment
	// before the gap is declared lost; IdleTimeout closes connections with
	// no packet for that long.
	GapTimeout, IdleTimeout time.Duration
	// MaxPages bounds the out-of-order buffer, in pages of ~1.9 KiB.
	MaxPages int
}

// Stats are a Sniffer's counters.
type Stats struct {
	Packets   int64 // TCP packets given to the reassembler
	Exchanges int64 // request/answer pairs read whole (captured or not)
	Published int64 // exchanges handed to the capturer
	Dropped   int64 // exchanges lost (every reason)
}

// Sniffer turns TCP packets into captured exchanges: it reassembles each
// connection (gopacket/reassembly), reads HTTP/1.1 requests and answers off
// both directions (keep-alive, pipelining, chunked bodies and trailers,
// bodies until close), pairs them in order and hands each whole exchange to
// the capturer, which applies the tap's routes, sampling, privacy and caps.
// It is not safe for concurrent use: one goroutine feeds it packets.
type Sniffer struct {
	capt    *publisher.Capturer
	cfg     Config
	port    int
	maxBody int64
	source  schemas.Source
	log     *slog.Logger

	asm      *reassembly.Assembler
	parser   *gopacket.DecodingLayerParser
	first    gopacket.LayerType
	eth      layers.Ethernet
	sll      layers.LinuxSLL
	sll2     layers.LinuxSLL2
	lo       layers.Loopback
	dot1q    layers.Dot1Q
	ip4      layers.IPv4
	ip6      layers.IPv6
	tcp      layers.TCP
	decoded  []gopacket.LayerType
	heads    headReader
	acs      []assemblerContext // slab handing out each packet's context (see packetContext)
	lastTick time.Time
	ctx      context.Context
	err      error

	packets   prometheus.Counter
	exchanges prometheus.Counter
	drops     *prometheus.CounterVec
	// counters, read by Stats from other goroutines
	nPackets, nExchanges, nPublished, nDropped atomic.Int64
}

// Deps are what a Sniffer uses and does not own.
type Deps struct {
	Capturer   *publisher.Capturer   // required: where exchanges are published
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics not exported
}

// New builds a Sniffer publishing through deps.Capturer. It does no I/O.
func New(cfg Config, deps Deps) (*Sniffer, error) {
	c, log, reg := deps.Capturer, deps.Logger, deps.Registerer
	if c == nil {
		return nil, errors.New("sniff: no capturer")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("sniff: port %d: want 1..65535", cfg.Port)
	}
	if cfg.Source == "" {
		cfg.Source = schemas.SourceSniff
	}
	if cfg.GapTimeout <= 0 {
		cfg.GapTimeout = DefaultGapTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxPages <= 0 {
		cfg.MaxPages = DefaultMaxPages
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sniffer{capt: c, cfg: cfg, port: cfg.Port, maxBody: c.MaxBody(), source: cfg.Source, log: log, ctx: context.Background()}
	s.packets = prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_sniff_packets_total", Help: "TCP packets given to the reassembler."})
	s.exchanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_sniff_exchanges_total", Help: "HTTP request/answer pairs read whole off the wire (captured or not by routes and sampling)."})
	s.drops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sniff_dropped_total", Help: "Exchanges seen but not published, by reason (lost_segments, midstream, tls, http2, not_http, unpaired, incomplete, queue_full); midstream counts connections."}, []string{"reason"})
	if err := stage.Register(reg, "sniff", s.packets, s.exchanges, s.drops); err != nil {
		return nil, err
	}
	pool := reassembly.NewStreamPool(&factory{s: s})
	s.asm = reassembly.NewAssembler(pool)
	s.asm.MaxBufferedPagesTotal = cfg.MaxPages
	s.asm.MaxBufferedPagesPerConnection = max(cfg.MaxPages/8, 256)
	s.first = layers.LayerTypeEthernet
	s.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &s.eth, &s.sll, &s.sll2, &s.lo, &s.dot1q, &s.ip4, &s.ip6, &s.tcp)
	s.parser.IgnoreUnsupported = true
	return s, nil
}

type factory struct{ s *Sniffer }

func (f *factory) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	c := &conn{s: f.s, firstSrc: tcp.SrcPort}
	src, dst := netFlow.Endpoints()
	// The client is the SYN's sender, else the side not on the service port.
	fromClient := true
	switch {
	case tcp.SYN:
		fromClient = !tcp.ACK
	case f.s.port != 0:
		fromClient = tcp.DstPort == layers.TCPPort(f.s.port)
	default:
		return c // side unknown: joined mid-way, given up on its first bytes
	}
	c.known = true
	client, cport, sport := src, tcp.SrcPort, tcp.DstPort
	if !fromClient {
		client, cport, sport = dst, tcp.DstPort, tcp.SrcPort
	}
	c.clientPort, c.serverPort = cport, sport
	c.clientAddr = net.JoinHostPort(net.IP(client.Raw()).String(), strconv.Itoa(int(cport)))
	return c
}

type assemblerContext struct{ ci gopacket.CaptureInfo }

func (a *assemblerContext) GetCaptureInfo() gopacket.CaptureInfo { return a.ci }

// packetContext returns a fresh context for one packet. The reassembler
// keeps a packet's context with its data while it waits out of order, so
// contexts are not reused; they are cut from a slab, one allocation per
// acSlab packets instead of one per packet (a waiting page keeps its slab,
// a few KiB, alive).
func (s *Sniffer) packetContext(ci gopacket.CaptureInfo) *assemblerContext {
	if len(s.acs) == 0 {
		s.acs = make([]assemblerContext, acSlab)
	}
	ac := &s.acs[0]
	s.acs = s.acs[1:]
	ac.ci = ci
	return ac
}

const acSlab = 128

// Packet feeds one captured frame of the given link type.
func (s *Sniffer) Packet(link layers.LinkType, data []byte, ci gopacket.CaptureInfo) {
	first := layers.LayerTypeEthernet
	switch link {
	case layers.LinkTypeLinuxSLL:
		first = layers.LayerTypeLinuxSLL
	case layers.LinkTypeLinuxSLL2:
		first = layers.LayerTypeLinuxSLL2
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		first = layers.LayerTypeLoopback
	case layers.LinkTypeRaw, layers.LinkTypeIPv4:
		first = layers.LayerTypeIPv4
		if len(data) > 0 && data[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
	case layers.LinkTypeIPv6:
		first = layers.LayerTypeIPv6
	}
	if first != s.first {
		s.first = first
		s.parser = gopacket.NewDecodingLayerParser(first, &s.eth, &s.sll, &s.sll2, &s.lo, &s.dot1q, &s.ip4, &s.ip6, &s.tcp)
		s.parser.IgnoreUnsupported = true
	}
	s.feed(data, ci)
}

func (s *Sniffer) feed(data []byte, ci gopacket.CaptureInfo) {
	_ = s.parser.DecodeLayers(data, &s.decoded)
	var netFlow gopacket.Flow
	haveNet, haveTCP := false, false
	for _, lt := range s.decoded {
		switch lt {
		case layers.LayerTypeIPv4:
			netFlow, haveNet = s.ip4.NetworkFlow(), true
		case layers.LayerTypeIPv6:
			netFlow, haveNet = s.ip6.NetworkFlow(), true
		case layers.LayerTypeTCP:
			haveTCP = true
		}
	}
	if !haveNet || !haveTCP {
		return
	}
	if s.port != 0 && s.tcp.SrcPort != layers.TCPPort(s.port) && s.tcp.DstPort != layers.TCPPort(s.port) {
		return
	}
	s.nPackets.Add(1)
	s.packets.Inc()
	s.asm.AssembleWithContext(netFlow, &s.tcp, s.packetContext(ci))
	s.tick(ci.Timestamp)
}

// tick flushes, at most once a second of packet time, gaps older than the
// gap timeout and connections idle longer than the idle timeout.
func (s *Sniffer) tick(now time.Time) {
	if now.Sub(s.lastTick) < time.Second {
		return
	}
	s.lastTick = now
	s.asm.FlushWithOptions(reassembly.FlushOptions{T: now.Add(-s.cfg.GapTimeout), TC: now.Add(-s.cfg.IdleTimeout)})
}

// Close ends every connection still followed (counting unfinished
// exchanges) and returns the first publishing error of a waiting Sniffer.
func (s *Sniffer) Close() error {
	s.asm.FlushAll()
	return s.err
}

// Stats returns the counters.
func (s *Sniffer) Stats() Stats {
	return Stats{Packets: s.nPackets.Load(), Exchanges: s.nExchanges.Load(), Published: s.nPublished.Load(), Dropped: s.nDropped.Load()}
}

func (s *Sniffer) dropped(reason string, n int) {
	s.nDropped.Add(int64(n))
	s.drops.WithLabelValues(reason).Add(float64(n))
}

func (s *Sniffer) exchanged() {
	s.nExchanges.Add(1)
	s.exchanges.Inc()
}

func (s *Sniffer) publish(seen *publisher.Seen, o publisher.Observed) {
	if s.cfg.Wait {
		if s.err != nil {
			return
		}
		if err := seen.FinishWait(s.ctx, o); err != nil {
			s.err = err
			s.dropped(ReasonQueueFull, 1)
			return
		}
	} else if !seen.Finish(o) {
		s.dropped(ReasonQueueFull, 1)
		return
	}
	s.nPublished.Add(1)
}
