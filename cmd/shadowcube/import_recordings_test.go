package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportRecordings: import reads the tcpdump and GoReplay fixtures
// (gzipped GoReplay too) and reports GoReplay's lone pipelined responses at
// their offsets; a file that is not pcap stops with FILE:OFFSET.
func TestImportRecordings(t *testing.T) {
	t.Setenv("SHADOWCUBE_NATS_URL", "")
	t.Setenv("SHADOWCUBE_NATS_DATA_DIR", t.TempDir())
	t.Setenv("SHADOWCUBE_METRICS_ADDR", "")
	t.Setenv("SHADOWCUBE_TAP_SERVICE", "saju")
	t.Setenv("SHADOWCUBE_USER_KEY_SECRET", "import-test-secret-0123456789abcdef")
	fixtures := filepath.Join("..", "..", "publisher", "sniff", "testdata")
	code, out, errOut := runCLI(t, "import", "--no-progress", filepath.Join(fixtures, "traffic.pcap"), filepath.Join(fixtures, "traffic.gor.gz"))
	if code != 0 || !strings.Contains(out, "imported 8 events from 2 file(s); 2 bad records skipped; 8 acknowledged") ||
		!strings.Contains(errOut, "traffic.gor.gz:380: response 82ba46a07f000001f6248b17 has no request") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.pcap")
	os.WriteFile(bad, []byte("GET / HTTP/1.1\r\n\r\n"), 0o600)
	code, _, errOut = runCLI(t, "import", "--no-progress", bad)
	if code != 1 || !strings.Contains(errOut, bad+":0: not a pcap file") {
		t.Fatalf("bad pcap: exit %d, stderr %s", code, errOut)
	}
}
