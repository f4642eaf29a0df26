package sniff

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"
)

// packetSource is what a capture reads: an AF_PACKET socket or a file.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Live is an AF_PACKET capture on one interface, through a TPACKET_V3
// ring shared with the kernel (no system call per packet, no copy).
type Live struct {
	h    *afpacket.TPacket
	link layers.LinkType
}

// DefaultRingBytes is the size of the capture ring: what the kernel can
// hold while sniff is busy before it drops packets (counted by the kernel,
// then as lost_segments here).
const DefaultRingBytes = 32 << 20

// OpenLive opens a packet socket on iface (needs CAP_NET_RAW) with a ring
// of ringBytes (0: DefaultRingBytes) and a kernel filter: the compiled
// program filter when given (tcpdump -ddd output, see ParseBPF), else
// "tcp port <port>". On the loopback interface each packet would be seen
// twice (going out and coming in): the filter drops the outgoing copy.
func OpenLive(iface string, port int, filter []bpf.RawInstruction, ringBytes int) (*Live, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("sniff: interface %q: %w (list them with `ip link`)", iface, err)
	}
	if filter == nil {
		if port <= 0 || port > 65535 {
			return nil, fmt.Errorf("sniff: port %d: want 1..65535 (or a --bpf program)", port)
		}
		if filter, err = PortFilter(port); err != nil {
			return nil, err
		}
	}
	if ifc.Flags&net.FlagLoopback != 0 {
		filter = append(dropOutgoing(), filter...)
	}
	if ringBytes <= 0 {
		ringBytes = DefaultRingBytes
	}
	const block = 1 << 20 // holds the largest packet (64 KiB with segmentation offload)
	h, err := afpacket.NewTPacket(afpacket.OptInterface(iface), afpacket.TPacketVersion3,
		afpacket.OptFrameSize(1<<16), afpacket.OptBlockSize(block), afpacket.OptNumBlocks(max(ringBytes/block, 2)),
		afpacket.OptBlockTimeout(20*time.Millisecond), afpacket.OptPollTimeout(0))
	if err != nil {
		return nil, fmt.Errorf("sniff: packet socket on %s: %w (sniff needs CAP_NET_RAW: run as root or give the binary/container that capability)", iface, err)
	}
	if err := h.SetBPF(filter); err != nil {
		h.Close()
		return nil, fmt.Errorf("sniff: attach BPF filter: %w", err)
	}
	return &Live{h: h, link: layers.LinkTypeEthernet}, nil
}

// Close closes the socket. Run closes it itself when its context ends.
func (l *Live) Close() error {
	l.h.Close()
	return nil
}

// KernelDrops returns the packets the kernel dropped because the ring was
// full, since the last call.
func (l *Live) KernelDrops() int64 {
	_, v3, err := l.h.SocketStats()
	if err != nil {
		return 0
	}
	return int64(v3.Drops())
}

// idleWait is how long Run sleeps when the ring has no finished block. The
// kernel hands blocks over when full or after the 20 ms block timeout, so a
// few milliseconds add nothing to what the ring already holds back.
const idleWait = 5 * time.Millisecond

// Run feeds s every packet of l until ctx ends, then closes l and s.
// Gaps and idle connections are flushed by the wall clock while no
// packet comes.
//
// The ring is polled without blocking (poll timeout 0) and an empty ring is
// waited out on a Go timer: a poll(2) blocking in the kernel would hold an
// OS thread and its P in a system call, which the Go runtime answers by
// waking its monitor every 20 µs to hand the P over — a cost measured at
// about a quarter of sniff's CPU per captured request (docs/capture.md).
func (s *Sniffer) Run(ctx context.Context, l *Live) error {
	defer l.Close()
	wait := time.NewTimer(idleWait)
	defer wait.Stop()
	for {
		data, ci, err := l.h.ZeroCopyReadPacketData()
		if ctx.Err() != nil {
			s.Close()
			return nil
		}
		switch {
		case err == nil:
			s.Packet(l.link, data, ci)
		case errors.Is(err, afpacket.ErrTimeout):
			s.tick(time.Now())
			wait.Reset(idleWait)
			select {
			case <-ctx.Done():
			case <-wait.C:
			}
		case isTemporary(err):
		default:
			s.Close()
			return fmt.Errorf("sniff: read packet: %w", err)
		}
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// PortFilter is the kernel filter "tcp port N" for Ethernet frames, IPv4
// (unfragmented or first fragment) and IPv6 (TCP as next header).
func PortFilter(port int) ([]bpf.RawInstruction, error) {
	p := uint32(port)
	const accept, drop = 262144, 0
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},                                 // 0 ethertype
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x86dd, SkipTrue: 10},         // 1 → 12 ipv6
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 16},        // 2 → 19 drop
		bpf.LoadAbsolute{Off: 23, Size: 1},                                 // 3 ip proto
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 14},             // 4 → 19 drop
		bpf.LoadAbsolute{Off: 20, Size: 2},                                 // 5 flags + fragment offset
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 12},       // 6 → 19 drop
		bpf.LoadMemShift{Off: 14},                                          // 7 X = IP header length
		bpf.LoadIndirect{Off: 14, Size: 2},                                 // 8 source port
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: p, SkipTrue: 8},               // 9 → 18 accept
		bpf.LoadIndirect{Off: 16, Size: 2},                                 // 10 destination port
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: p, SkipTrue: 6, SkipFalse: 7}, // 11 → 18 accept / 19 drop
		bpf.LoadAbsolute{Off: 20, Size: 1},                                 // 12 ipv6 next header
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 5},              // 13 → 19 drop
		bpf.LoadAbsolute{Off: 54, Size: 2},                                 // 14 source port
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: p, SkipTrue: 2},               // 15 → 18 accept
		bpf.LoadAbsolute{Off: 56, Size: 2},                                 // 16 destination port
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: p, SkipFalse: 1},              // 17 → 19 drop
		bpf.RetConstant{Val: accept},                                       // 18
		bpf.RetConstant{Val: drop},                                         // 19
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("sniff: port filter: %w", err)
	}
	return raw, nil
}

// dropOutgoing is a filter prefix that drops packets the host sends (on
// loopback they come back as received packets) and continues with the
// instruction after it otherwise.
func dropOutgoing() []bpf.RawInstruction {
	raw, _ := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4 /* PACKET_OUTGOING */, SkipFalse: 1},
		bpf.RetConstant{Val: 0},
	})
	return raw
}

// ParseBPF reads a compiled classic BPF program in the format of
// `tcpdump -ddd EXPR` (the instruction count, then one "code jt jf k" line
// per instruction). name is used in errors.
func ParseBPF(name string, r io.Reader) ([]bpf.RawInstruction, error) {
	sc := bufio.NewScanner(r)
	var prog []bpf.RawInstruction
	count, line := -1, 0
	for sc.Scan() {
		line++
		f := strings.Fields(strings.ReplaceAll(sc.Text(), ",", " "))
		if len(f) == 0 {
			continue
		}
		if count < 0 {
			n, err := strconv.Atoi(f[0])
			if err != nil || len(f) != 1 || n < 1 || n > 4096 {
				return nil, fmt.Errorf("%s:%d: want the instruction count of `tcpdump -ddd` output, got %q", name, line, sc.Text())
			}
			count = n
			continue
		}
		if len(f) != 4 {
			return nil, fmt.Errorf("%s:%d: want \"code jt jf k\", got %q", name, line, sc.Text())
		}
		var v [4]uint64
		for i, s := range f {
			x, err := strconv.ParseUint(s, 10, 32)
			if err != nil || (i == 0 && x > 0xffff) || ((i == 1 || i == 2) && x > 0xff) {
				return nil, fmt.Errorf("%s:%d: field %d %q out of range", name, line, i+1, s)
			}
			v[i] = x
		}
		prog = append(prog, bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if count < 0 || len(prog) != count {
		return nil, fmt.Errorf("%s: %d instructions, the first line says %d", name, len(prog), count)
	}
	return prog, nil
}

// FileError is a malformed recording: the file and the byte offset where
// reading failed.
type FileError struct {
	File   string
	Offset int64
	Msg    string
}

func (e *FileError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Offset, e.Msg) }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ReadFile feeds s every packet of a pcap or pcapng file (gzipped too),
// then closes s. A malformed file is a *FileError naming the byte offset
// (of the decompressed stream) where reading failed; the exchanges read
// before it stay published.
func (s *Sniffer) ReadFile(ctx context.Context, name string, r io.Reader) error {
	s.ctx = ctx
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return &FileError{File: name, Offset: 0, Msg: "bad gzip header: " + err.Error()}
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	cr := &countingReader{r: br}
	magic, _ := br.Peek(4)
	var src packetSource
	var link layers.LinkType
	ng := false
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		nr, err := pcapgo.NewNgReader(cr, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return &FileError{File: name, Offset: 0, Msg: "not a pcapng file: " + err.Error()}
		}
		src, link, ng = nr, nr.LinkType(), true
	} else {
		pr, err := pcapgo.NewReader(cr)
		if err != nil {
			return &FileError{File: name, Offset: 0, Msg: "not a pcap file (want pcap or pcapng, e.g. from tcpdump -w): " + err.Error()}
		}
		src, link = pr, pr.LinkType()
	}
	// The offset of each pcap record: the 24-byte file header, then a
	// 16-byte header and the captured bytes per packet. pcapng blocks vary:
	// there the offset is how far the reader had read (at or after it).
	off := int64(24)
	for n := 0; ; n++ {
		if ng {
			off = cr.n
		}
		data, ci, err := src.ZeroCopyReadPacketData()
		if err == nil {
			off += 16 + int64(len(data))
		} else {
			if errors.Is(err, io.EOF) {
				break
			}
			s.Close()
			return &FileError{File: name, Offset: off, Msg: fmt.Sprintf("packet %d: %v", n+1, err)}
		}
		s.Packet(link, data, ci)
		if s.err != nil {
			break
		}
		if n%1024 == 0 && ctx.Err() != nil {
			s.Close()
			return ctx.Err()
		}
	}
	return s.Close()
}
