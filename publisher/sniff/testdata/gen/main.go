// Command gen records the fixtures of package sniff with the real tools:
// it serves a small legacy-like HTTP service on 127.0.0.1:18080, starts
// tcpdump and GoReplay (gor) on the loopback interface, drives a fixed
// sequence of requests (keep-alive, pipelined, chunked, gzip, 5xx) and stops
// the recorders. Run as root from the repository root:
//
//	go run ./publisher/sniff/testdata/gen -gor /path/to/gor
//
// It writes publisher/sniff/testdata/traffic.pcap, traffic.gor and
// traffic.gor.gz. The import tests expect exactly the exchanges below.
package main

import (
	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const addr = "127.0.0.1:18080"

func handler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Date", "Mon, 30 Nov 2026 12:00:00 GMT")
	w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
	switch r.URL.Path {
	case "/api/saju/chart":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"year":%q,"pillar":"gyeong-o"}`, r.URL.Query().Get("year"))
	case "/api/ai/analyze":
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"label":"calm","confidence":0.91,"bytes":%d}`, len(b))
	case "/stream":
		w.Header().Set("Content-Type", "text/plain")
		for i := range 3 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
	case "/gzip":
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write([]byte(strings.Repeat("saju ", 200)))
		zw.Close()
	case "/fail":
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "legacy overloaded\n")
	default:
		http.NotFound(w, r)
	}
}

// requests are sent on two connections; the second and third of the first
// connection go out pipelined in one write.
var conn1 = []string{
	"GET /api/saju/chart?year=1990 HTTP/1.1\r\nHost: legacy\r\nX-Request-Id: r1\r\nX-User-Id: user-7\r\n\r\n",
	"GET /stream HTTP/1.1\r\nHost: legacy\r\nX-Request-Id: r2\r\n\r\n" +
		"GET /fail HTTP/1.1\r\nHost: legacy\r\nX-Request-Id: r3\r\n\r\n",
}

var conn2 = []string{
	"POST /api/ai/analyze HTTP/1.1\r\nHost: legacy\r\nX-Request-Id: r4\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"b\r\n{\"text\":\"hi\r\n2\r\n\"}\r\n0\r\n\r\n",
	"GET /gzip HTTP/1.1\r\nHost: legacy\r\nX-Request-Id: r5\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
}

func drive(reqs []string, answers int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, r := range reqs {
		if _, err := io.WriteString(c, r); err != nil {
			log.Fatal(err)
		}
		n := strings.Count(r, " HTTP/1.1\r\n")
		for range n {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				log.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers--
		}
		time.Sleep(50 * time.Millisecond)
	}
	if answers != 0 {
		log.Fatalf("%d answers missing", answers)
	}
}

func main() {
	gor := flag.String("gor", "gor", "GoReplay binary")
	out := flag.String("out", "publisher/sniff/testdata", "output directory")
	flag.Parse()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(ln, http.HandlerFunc(handler))
	pcap := filepath.Join(*out, "traffic.pcap")
	td := exec.Command("tcpdump", "-i", "lo", "-U", "-s", "0", "-w", pcap, "tcp port 18080")
	g1 := exec.Command(*gor, "--input-raw", ":18080", "--input-raw-track-response", "--output-file", filepath.Join(*out, "traffic.gor"), "--output-file-append")
	g2 := exec.Command(*gor, "--input-raw", ":18080", "--input-raw-track-response", "--output-file", filepath.Join(*out, "traffic.gor.gz"), "--output-file-append")
	for _, c := range []*exec.Cmd{td, g1, g2} {
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			log.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // recorders attach
	drive(conn1, 3)
	drive(conn2, 2)
	time.Sleep(3 * time.Second) // recorders flush
	for _, c := range []*exec.Cmd{td, g1, g2} {
		c.Process.Signal(syscall.SIGINT)
		c.Wait()
	}
}
