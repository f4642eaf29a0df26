package sniff

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
)

// fixture is testdata/traffic.pcap, recorded by testdata/gen with tcpdump:
// two connections to 127.0.0.1:18080, five exchanges r1..r5 (r2 and r3
// pipelined, r2 a chunked answer, r3 a 503, r4 a chunked request body, r5 a
// gzip answer on a Connection: close request).
const fixture = "testdata/traffic.pcap"

type packet struct {
	data []byte
	ci   gopacket.CaptureInfo
}

func readPackets(tb testing.TB, name string) []packet {
	tb.Helper()
	f, err := os.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	var out []packet
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, packet{data: data, ci: ci})
	}
	return out
}

func newSniffer(tb testing.TB, s *sink, cfg Config) *Sniffer {
	tb.Helper()
	sn, err := New(cfg, Deps{Capturer: s.c, Registerer: s.reg})
	if err != nil {
		tb.Fatal(err)
	}
	return sn
}

func checkFixtureEvents(t *testing.T, s *sink, evs map[string]schemas.RequestEvent, ids ...string) {
	t.Helper()
	if len(evs) != len(ids) {
		t.Fatalf("%d events, want %v", len(evs), ids)
	}
	want := map[string]struct {
		method, path, query string
		status              int
		body, respBody      string
	}{
		"r1": {"GET", "/api/saju/chart", "year=1990", 200, "", `{"year":"1990","pillar":"gyeong-o"}`},
		"r2": {"GET", "/stream", "", 200, "", "part 0\npart 1\npart 2\n"},
		"r3": {"GET", "/fail", "", 503, "", "legacy overloaded\n"},
		"r4": {"POST", "/api/ai/analyze", "", 200, `{"text":"hi"}`, `{"label":"calm","confidence":0.91,"bytes":13}`},
	}
	for _, id := range ids {
		ev, ok := evs[id]
		if !ok {
			t.Fatalf("no event for %s", id)
		}
		if ev.Service != "saju" || ev.Route != publisher.OtherRoute || ev.V != schemas.Version || ev.BodyTruncated || ev.Response.BodyTruncated {
			t.Errorf("%s: %+v", id, ev)
		}
		if id == "r5" {
			if ev.Path != "/gzip" || ev.Response.Headers.Get("Content-Encoding") != "gzip" || len(ev.Response.Body) < 10 || ev.Response.Body[0] != 0x1f {
				t.Errorf("r5 (gzip answer kept as sent): %+v", ev)
			}
			continue
		}
		w := want[id]
		if ev.Method != w.method || ev.Path != w.path || ev.Query != w.query || ev.Response.Status != w.status ||
			string(ev.Body) != w.body || string(ev.Response.Body) != w.respBody {
			t.Errorf("%s: got %s %s?%s → %d body %q answer %q", id, ev.Method, ev.Path, ev.Query, ev.Response.Status, ev.Body, ev.Response.Body)
		}
	}
	if r1, ok := evs["r1"]; ok && (r1.UserKey != s.c.UserKey("user-7") || r1.Headers.Get("X-User-Id") != "") {
		t.Errorf("r1: user key %q, headers %v", r1.UserKey, r1.Headers)
	}
}

// TestReadPcapFixture: the tcpdump recording gives the five exchanges,
// including the two pipelined ones GoReplay missed.
func TestReadPcapFixture(t *testing.T) {
	s := newSink(t, publisher.Config{})
	sn := newSniffer(t, s, Config{Source: schemas.SourceImport, Wait: true})
	f, err := os.Open(fixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := sn.ReadFile(testenv.Context(t, 30*time.Second), fixture, f); err != nil {
		t.Fatal(err)
	}
	s.flush(t)
	if st := sn.Stats(); st.Exchanges != 5 || st.Published != 5 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	evs := s.events(t)
	for _, ev := range evs {
		if ev.Source != schemas.SourceImport {
			t.Errorf("source %q", ev.Source)
		}
	}
	checkFixtureEvents(t, s, byRequestID(t, evs), "r1", "r2", "r3", "r4", "r5")
}

// TestLostSegments feeds the recording with the segment carrying "part 1"
// of r2's chunked answer removed: r2 and r3 (pipelined behind it) are
// counted as lost_segments, nothing of them is published, and r1, r4, r5
// are published exactly as from the whole recording.
func TestLostSegments(t *testing.T) {
	pkts := readPackets(t, fixture)
	run := func(drop func(packet) bool) (*sink, *Sniffer, int) {
		s := newSink(t, publisher.Config{})
		sn := newSniffer(t, s, Config{Source: schemas.SourceImport, Wait: true})
		dropped := 0
		for _, p := range pkts {
			if drop(p) {
				dropped++
				continue
			}
			sn.Packet(1 /* Ethernet */, p.data, p.ci)
		}
		if err := sn.Close(); err != nil {
			t.Fatal(err)
		}
		s.flush(t)
		return s, sn, dropped
	}
	whole, _, _ := run(func(packet) bool { return false })
	cut, sn, n := run(func(p packet) bool { return bytes.Contains(p.data, []byte("part 1\n")) })
	if n != 1 {
		t.Fatalf("dropped %d packets, want exactly the one carrying part 1 (the fault must hit r2's answer)", n)
	}
	if got := testenv.Metric(t, cut.reg, "shadowcube_sniff_dropped_total", "reason", ReasonLostSegments); got != 2 {
		t.Fatalf("lost_segments = %v, want 2 (r2 and the pipelined r3)", got)
	}
	if st := sn.Stats(); st.Published != 3 || st.Dropped != 2 {
		t.Fatalf("stats %+v", st)
	}
	all := byRequestID(t, whole.events(t))
	got := byRequestID(t, cut.events(t))
	checkFixtureEvents(t, cut, got, "r1", "r4", "r5")
	for id, ev := range got {
		if d := cmp.Diff(all[id], ev, cmpopts.IgnoreFields(schemas.RequestEvent{}, "ID")); d != "" {
			t.Errorf("%s differs from the whole recording's (-whole +cut):\n%s", id, d)
		}
	}
}

// TestReadPcapMalformed: a file that is not pcap, or is cut inside a
// packet, is a FILE:OFFSET error.
func TestReadPcapMalformed(t *testing.T) {
	raw, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	pkts := readPackets(t, fixture)
	lastRecord := int64(24) // file header, then 16 bytes + data per packet
	for _, p := range pkts[:len(pkts)-1] {
		lastRecord += 16 + int64(len(p.data))
	}
	for _, tc := range []struct {
		name string
		data []byte
		off  int64
	}{
		{"not-pcap.pcap", []byte("GET / HTTP/1.1\r\n\r\n"), 0},
		{"cut.pcap", raw[:len(raw)-10], lastRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, publisher.Config{})
			sn := newSniffer(t, s, Config{Source: schemas.SourceImport, Wait: true})
			err := sn.ReadFile(testenv.Context(t, 30*time.Second), tc.name, bytes.NewReader(tc.data))
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != tc.name {
				t.Fatalf("error %v, want a FileError naming %s", err, tc.name)
			}
			if fe.Offset != tc.off || !strings.HasPrefix(err.Error(), tc.name+":") {
				t.Fatalf("error %v: offset %d, want %d", err, fe.Offset, tc.off)
			}
		})
	}
}
