package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagsBadInput: a negative percent gets the percent message (old code:
// "unknown shorthand flag: '1' in -1") and a bad service name names the
// allowed characters (old code: a KV "invalid key" error after connecting).
func TestFlagsBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"flags", "set", "saju", "-1"}, `percent "-1": want an integer 0..100`},
		{[]string{"flags", "set", "saju", "101"}, `percent "101": want an integer 0..100`},
		{[]string{"flags", "set", "sa ju", "10"}, "use 1 to 64 letters, digits, '-' and '_'"},
		{[]string{"flags", "get", "sa.ju"}, "use 1 to 64 letters, digits, '-' and '_'"},
		{[]string{"flags", "ramp", "sa/ju", "--to", "50"}, "use 1 to 64 letters, digits, '-' and '_'"},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

// TestImportNothingImportedExits1: an import whose every record is bad
// exits 1 and says how many were bad (old code: exit 0), and records with a
// raw user_key are bad unless --keyed-user-keys.
func TestImportNothingImportedExits1(t *testing.T) {
	t.Setenv("SHADOWCUBE_NATS_URL", "")
	t.Setenv("SHADOWCUBE_NATS_DATA_DIR", t.TempDir())
	t.Setenv("SHADOWCUBE_METRICS_ADDR", "")
	t.Setenv("SHADOWCUBE_TAP_SERVICE", "saju")
	t.Setenv("SHADOWCUBE_USER_KEY_SECRET", "import-test-secret-0123456789abcdef")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{not json\n"+`{"method":"GET","path":"/x","user_key":"alice","captured_at":"2026-11-25T10:00:00Z","response":{"status":200}}`+"\n"), 0o600)
	code, out, errOut := runCLI(t, "import", "--no-progress", bad)
	if code != 1 || !strings.Contains(errOut, "no event imported: all 2 records were bad") || !strings.Contains(errOut, "--keyed-user-keys") {
		t.Errorf("all-bad import: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if strings.Contains(errOut, "alice") {
		t.Errorf("the raw user_key is echoed: %s", errOut)
	}
	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, []byte("# nothing\n"), 0o600)
	if code, _, errOut := runCLI(t, "import", "--no-progress", empty); code != 1 || !strings.Contains(errOut, "hold no records") {
		t.Errorf("empty import: exit %d, stderr %s", code, errOut)
	}
	short := filepath.Join(dir, "ok.jsonl")
	os.WriteFile(short, []byte(`{"method":"GET","path":"/x","captured_at":"2026-11-25T10:00:00Z","response":{"status":200}}`+"\n"), 0o600)
	t.Setenv("SHADOWCUBE_USER_KEY_SECRET", "too-short")
	if code, _, errOut := runCLI(t, "import", "--no-progress", short); code != 2 || !strings.Contains(errOut, "want at least 32") || strings.Contains(errOut, "too-short") {
		t.Errorf("short secret: exit %d, stderr %s", code, errOut)
	}
}
