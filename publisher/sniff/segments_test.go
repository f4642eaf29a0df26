package sniff

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"pgregory.net/rapid"

	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
)

// TestSegmentCutsDoNotMatter: however the two byte streams of a connection
// are cut into segments (heads and bodies split anywhere, several pipelined
// requests or answers in one segment), every exchange is published whole
// and exactly as sent. Each case is a connection of its own, fed into one
// Sniffer; the stream is read back at the end.
func TestSegmentCutsDoNotMatter(t *testing.T) {
	s := newSink(t, publisher.Config{})
	sn := newSniffer(t, s, Config{Port: 18080})
	w := &wire{port: 18080, ts: time.Unix(1700000000, 0)}
	type want struct{ path, body, answer string }
	wants := map[string]want{}
	cases := 0
	rapid.Check(t, func(rt *rapid.T) {
		cases++
		n := rapid.IntRange(1, 4).Draw(rt, "exchanges")
		var client, server []byte
		for i := range n {
			id := fmt.Sprintf("c%d-%d", cases, i)
			body := rapid.StringMatching(`[a-z0-9]{0,300}`).Draw(rt, "body")
			answer := strings.Repeat(rapid.StringMatching(`[a-z0-9 ]{0,300}`).Draw(rt, "answer"), rapid.IntRange(1, 10).Draw(rt, "answer repeats"))
			path := "/p/" + id
			method := "GET"
			if body != "" {
				method = "POST"
			}
			client = append(client, method+" "+path+" HTTP/1.1\r\nHost: svc\r\nX-Request-Id: "+id+"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body...)
			if rapid.Bool().Draw(rt, "chunked") && answer != "" {
				h := max(len(answer)/2, 1) // a chunk of size 0 would end the body
				server = append(server, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+
					chunk(answer[:h])+chunk(answer[h:])+"0\r\n\r\n"...)
			} else {
				server = append(server, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(answer))+"\r\n\r\n"+answer...)
			}
			wants[id] = want{path, body, answer}
		}
		cut := func(b []byte, label string) [][]byte {
			k := rapid.IntRange(0, 8).Draw(rt, label)
			points := []int{0, len(b)}
			for range k {
				points = append(points, rapid.IntRange(0, len(b)).Draw(rt, label+" at"))
			}
			slices.Sort(points)
			var segs [][]byte
			for i := 1; i < len(points); i++ {
				if points[i] > points[i-1] {
					segs = append(segs, b[points[i-1]:points[i]])
				}
			}
			return segs
		}
		w.frame = w.frame[:0]
		w.next++
		c := &tcpConn{cport: 20000 + w.next, cseq: 1000, sseq: 5000}
		w.segment(t, c, true, "S", nil)
		w.segment(t, c, false, "SA", nil)
		w.segment(t, c, true, "A", nil)
		for _, seg := range cut(client, "client cuts") {
			w.segment(t, c, true, "PA", seg)
		}
		for _, seg := range cut(server, "server cuts") {
			w.segment(t, c, false, "PA", seg)
		}
		w.segment(t, c, true, "FA", nil)
		w.segment(t, c, false, "FA", nil)
		before := sn.Stats()
		for _, p := range w.frame {
			sn.Packet(layers.LinkTypeEthernet, p.data, p.ci)
		}
		if st := sn.Stats(); st.Dropped != before.Dropped || st.Published-before.Published != int64(n) {
			rt.Fatalf("stats %+v after %+v, want %d more published, none dropped (%s)", st, before, n, dropReasons(t, s))
		}
	})
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	s.flush(t)
	if st := sn.Stats(); st.Dropped != 0 || st.Published != int64(len(wants)) {
		t.Fatalf("stats %+v, want %d published", st, len(wants))
	}
	got := byRequestID(t, s.events(t))
	if len(got) != len(wants) {
		t.Fatalf("%d events, want %d", len(got), len(wants))
	}
	for id, w := range wants {
		ev := got[id]
		if ev.Path != w.path || string(ev.Body) != w.body || string(ev.Response.Body) != w.answer || ev.Source != schemas.SourceSniff {
			t.Errorf("%s: got %s body %q answer %q, want %s body %q answer %q", id, ev.Path, ev.Body, ev.Response.Body, w.path, w.body, w.answer)
		}
	}
}

// dropReasons lists shadowcube_sniff_dropped_total by reason.
func dropReasons(tb testing.TB, s *sink) string {
	mfs, err := s.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "shadowcube_sniff_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out = append(out, fmt.Sprintf("%s=%g", m.GetLabel()[0].GetValue(), m.GetCounter().GetValue()))
		}
	}
	return strings.Join(out, " ")
}

// chunk is data as one chunk of a chunked body; nothing for no data.
func chunk(data string) string {
	if data == "" {
		return ""
	}
	return strconv.FormatInt(int64(len(data)), 16) + "\r\n" + data + "\r\n"
}
