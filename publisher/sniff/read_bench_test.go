package sniff

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
)

// wire builds the Ethernet frames of keep-alive HTTP connections between
// one client and a service on port, as sniff sees them on lo: one segment
// per request and one per answer (acknowledgements piggybacked).
type wire struct {
	port  int
	ts    time.Time
	next  int // next client port
	frame []packet
}

type tcpConn struct {
	cport      int
	cseq, sseq uint32
}

func (w *wire) segment(tb testing.TB, c *tcpConn, fromClient bool, flags string, payload []byte) {
	tb.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 1)}
	tcp := &layers.TCP{Window: 65535}
	if fromClient {
		tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = layers.TCPPort(c.cport), layers.TCPPort(w.port), c.cseq, c.sseq
	} else {
		tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = layers.TCPPort(w.port), layers.TCPPort(c.cport), c.sseq, c.cseq
	}
	for _, f := range flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'P':
			tcp.PSH = true
		case 'F':
			tcp.FIN = true
		}
	}
	if !tcp.ACK {
		tcp.Ack = 0
	}
	tcp.SetNetworkLayerForChecksum(ip)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}, DstMAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}, EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	adv := uint32(len(payload))
	if tcp.SYN || tcp.FIN {
		adv++
	}
	if fromClient {
		c.cseq += adv
	} else {
		c.sseq += adv
	}
	w.ts = w.ts.Add(100 * time.Microsecond)
	data := buf.Bytes()
	w.frame = append(w.frame, packet{data: data, ci: gopacket.CaptureInfo{Timestamp: w.ts, CaptureLength: len(data), Length: len(data)}})
}

// exchanges appends the frames of n exchanges like the P1 load's (chartReq
// through Go's client, fastLegacy's answer) on conns new connections, each
// opened and closed.
func (w *wire) exchanges(tb testing.TB, n, conns int) {
	cs := make([]*tcpConn, conns)
	for i := range cs {
		w.next++
		c := &tcpConn{cport: 20000 + w.next%40000, cseq: 1000, sseq: 5000}
		cs[i] = c
		w.segment(tb, c, true, "S", nil)
		w.segment(tb, c, false, "SA", nil)
		w.segment(tb, c, true, "A", nil)
	}
	date := time.Unix(1700000000, 0).UTC().Format(time.RFC1123)
	date = date[:len(date)-3] + "GMT"
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: " + date + "\r\nContent-Length: " + strconv.Itoa(len(benchPayload)) + "\r\n\r\n" + string(benchPayload))
	for i := range n {
		c := cs[i%conns]
		req := "GET /api/saju/chart/" + strconv.Itoa(i%97) + " HTTP/1.1\r\nHost: 127.0.0.1:" + strconv.Itoa(w.port) + "\r\nUser-Agent: Go-http-client/1.1\r\nX-User-Id: user-" + strconv.Itoa(i%1000) + "\r\nAccept-Encoding: gzip\r\n\r\n"
		w.segment(tb, c, true, "PA", []byte(req))
		w.segment(tb, c, false, "PA", resp)
	}
	for _, c := range cs {
		w.segment(tb, c, true, "FA", nil)
		w.segment(tb, c, false, "FA", nil)
		w.segment(tb, c, true, "A", nil)
	}
}

// BenchmarkSniffRead: sniff's own reading per exchange, on one goroutine and
// without the packet socket: decoding frames, reassembly, HTTP parsing, the
// capture decision and the event handed to the capturer (a detached one: no
// NATS, so what it queues is dropped by its publisher goroutine). The figure
// P1's "nothing published" line measures through the whole system, without
// the noise of the load generator and the legacy server.
func BenchmarkSniffRead(b *testing.B) {
	const chunk, conns, port = 4096, 8, 18080
	c, err := publisher.New(publisher.Config{Service: "saju", Privacy: publisher.PrivacyConfig{Secret: []byte(testSecret)}}, publisher.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(b.Context()) }()
	b.Cleanup(func() {
		c.Close()
		<-done
	})
	sn, err := New(Config{Port: port}, Deps{Capturer: c})
	if err != nil {
		b.Fatal(err)
	}
	w := &wire{port: port, ts: time.Unix(1700000000, 0)}
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration
	for fed := 0; fed < b.N; fed += chunk {
		b.StopTimer()
		w.frame = w.frame[:0]
		w.exchanges(b, min(chunk, b.N-fed), conns)
		b.StartTimer()
		c0 := testenv.ProcessCPU()
		for _, p := range w.frame {
			sn.Packet(layers.LinkTypeEthernet, p.data, p.ci)
		}
		cpu += testenv.ProcessCPU() - c0
	}
	b.StopTimer()
	// the process's CPU (the capturer's goroutine encoding and dropping
	// included): less moved by other load than the wall time
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	if st := sn.Stats(); st.Exchanges != int64(b.N) || st.Published+st.Dropped != int64(b.N) {
		b.Fatalf("stats %+v for %d exchanges", st, b.N)
	}
}
