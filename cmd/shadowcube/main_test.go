package main

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/heal7/shadowcube/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "shadowcube ") || !strings.Contains(out, "commit ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("version = %d %q", code, out)
	}
}

func TestHelpListsCommandsAndEnv(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "  "+c.Name()+" ") {
			t.Errorf("--help does not list %q", c.Name())
		}
		sub, subOut, _ := runCLI(t, c.Name(), "--help")
		if sub != 0 || !strings.Contains(subOut, "Usage:") {
			t.Errorf("%s --help = %d %q", c.Name(), sub, subOut)
		}
	}
	if !strings.Contains(out, "SHADOWCUBE_NATS_URL") {
		t.Error("--help does not document SHADOWCUBE_NATS_URL")
	}
	if strings.Contains(strings.ToLower(out), "not implemented") {
		t.Error("help mentions unimplemented commands")
	}
}

func TestBadUsageIsOneLineAndExit2(t *testing.T) {
	code, _, errOut := runCLI(t, "no-such-command")
	if code != 2 || !strings.HasPrefix(errOut, "shadowcube: unknown command") || strings.Contains(errOut, "goroutine") {
		t.Fatalf("unknown command: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "version", "--bogus")
	if code != 2 || !strings.Contains(errOut, "--bogus") {
		t.Fatalf("unknown flag: exit %d, stderr %q", code, errOut)
	}
}
