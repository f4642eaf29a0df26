package sniff

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

// TestPortFilterAgreesWithTcpdump runs the built-in "tcp port N" filter and
// the programs tcpdump compiled (testdata/port1808*.bpf, `tcpdump -ddd`)
// over the recorded packets: same verdicts, and only port 18080's packets
// pass.
func TestPortFilterAgreesWithTcpdump(t *testing.T) {
	pkts := readPackets(t, fixture)
	vm := func(prog []bpf.RawInstruction) *bpf.VM {
		t.Helper()
		ins, ok := bpf.Disassemble(prog)
		if !ok {
			t.Fatalf("program does not disassemble")
		}
		v, err := bpf.NewVM(ins)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		file string
		port int
		pass bool
	}{{"testdata/port18080.bpf", 18080, true}, {"testdata/port18081.bpf", 18081, false}} {
		f, err := os.Open(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := ParseBPF(tc.file, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ours, err := PortFilter(tc.port)
		if err != nil {
			t.Fatal(err)
		}
		a, b := vm(theirs), vm(ours)
		for i, p := range pkts {
			x, err1 := a.Run(p.data)
			y, err2 := b.Run(p.data)
			if err1 != nil || err2 != nil || (x > 0) != (y > 0) || (y > 0) != tc.pass {
				t.Fatalf("%s packet %d: tcpdump's program %d (%v), ours %d (%v), want pass=%v", tc.file, i, x, err1, y, err2, tc.pass)
			}
		}
	}
}

func TestParseBPFErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "0 instructions"},
		{"2\n6 0 0 262144\n", "1 instructions, the first line says 2"},
		{"1\n6 0 0\n", `f.bpf:2: want "code jt jf k"`},
		{"x\n", "f.bpf:1: want the instruction count"},
		{"1\n6 0 300 0\n", "f.bpf:2: field 3"},
	} {
		_, err := ParseBPF("f.bpf", strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}
