package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDockerfile checks the image's shape: every base image pinned, a
// scratch/non-root runtime stage that copies what the build stage built,
// ENTRYPOINT ["shadowcube"], a HEALTHCHECK run by a binary in the image, and
// the ops address open to probes.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "../Dockerfile")
	last := -1
	for _, in := range ins {
		if in.cmd == "FROM" {
			ref := strings.Fields(in.args)[0]
			if err := pinnedImage(ref); err != nil {
				t.Errorf("Dockerfile:%d: %v", in.line, err)
			}
			last = in.stage
		}
	}
	if last < 1 {
		t.Fatalf("Dockerfile has %d stage(s); want a build stage and a runtime stage", last+1)
	}
	var user, entry, health string
	env := map[string]string{}
	copied := map[string]bool{}
	for _, in := range ins {
		if in.stage != last {
			continue
		}
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "HEALTHCHECK":
			health = in.args
		case "ENV":
			for k, v := range envPairs(in.args) {
				env[k] = v
			}
		case "COPY":
			for _, f := range strings.Fields(in.args) {
				if strings.HasPrefix(f, "/out/") {
					copied[strings.TrimPrefix(f, "/out/")] = true
				}
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("runtime stage USER %q: want a non-root user", user)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entry), &ep); err != nil || len(ep) != 1 || ep[0] != "shadowcube" {
		t.Errorf(`ENTRYPOINT %s: want ["shadowcube"] (exec form)`, entry)
	}
	if env["SHADOWCUBE_METRICS_ADDR"] != ":9090" {
		t.Errorf("runtime ENV SHADOWCUBE_METRICS_ADDR=%q: want :9090 so probes and Prometheus reach /healthz and /metrics", env["SHADOWCUBE_METRICS_ADDR"])
	}
	_, hcmd, ok := strings.Cut(health, "CMD ")
	var hc []string
	if !ok || json.Unmarshal([]byte(hcmd), &hc) != nil || len(hc) == 0 || !copied[hc[0]] {
		t.Errorf("HEALTHCHECK %q: want CMD [\"<binary copied from /out>\", ...]", health)
	}
	staticBinaries(t)
	for _, b := range builtBins {
		if !copied[b] {
			t.Errorf("built /out/%s is not copied into the runtime image", b)
		}
	}
	for b := range copied {
		if _, err := os.Stat(filepath.Join(buildDir, b)); err != nil {
			t.Errorf("runtime image copies /out/%s, which no go build line makes", b)
		}
	}
}

// TestDockerBuildIsStatic builds the binaries the way the Dockerfile does and
// checks each is a static ELF (no interpreter, no dynamic section: it runs on
// scratch), built with -trimpath (no host path inside), and that shadowcube
// prints the version and commit stamped through -ldflags.
func TestDockerBuildIsStatic(t *testing.T) {
	dir := staticBinaries(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range builtBins {
		path := filepath.Join(dir, b)
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s: program header %v: not a static binary (CGO_ENABLED=0?)", b, p.Type)
			}
		}
		if f.Section(".interp") != nil || f.Section(".dynamic") != nil {
			t.Errorf("%s: has .interp/.dynamic sections: dynamically linked", b)
		}
		f.Close()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(root+"/")) {
			t.Errorf("%s contains the build path %s: not built with -trimpath", b, root)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "shadowcube"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("shadowcube version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), testVersion) || !strings.Contains(string(out), testCommit) {
		t.Fatalf("shadowcube version printed %q; want the stamped %s and %s", out, testVersion, testCommit)
	}
}

// TestImageHealthcheck runs the image's HEALTHCHECK command as the image
// does (healthprobe, no argument, SHADOWCUBE_METRICS_ADDR=:<port>) against
// a real `shadowcube tap` whose NATS is unreachable (it serves its ops
// endpoint anyway): unhealthy before the process listens, healthy once it
// does. Also the demo-service form used in compose (URL argument).
func TestImageHealthcheck(t *testing.T) {
	dir := staticBinaries(t)
	probe := func(metricsAddr string, args ...string) (int, string) {
		cmd := exec.Command(filepath.Join(dir, "healthprobe"), args...)
		cmd.Env = append(os.Environ(), "SHADOWCUBE_METRICS_ADDR="+metricsAddr)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	ops, tapPort, natsPort, svcPort := freePort(t), freePort(t), freePort(t), freePort(t)
	if code, out := probe(":" + ops); code != 1 {
		t.Fatalf("probe before the process runs: exit %d (%s), want 1", code, out)
	}
	start := func(args []string, env ...string) {
		cmd := exec.Command(filepath.Join(dir, "shadowcube"), args...)
		cmd.Env = append(os.Environ(), env...)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("shadowcube %v output:\n%s", args, logs.String())
			}
		})
	}
	start([]string{"tap", "--listen", "127.0.0.1:" + tapPort, "--upstream", "http://127.0.0.1:1", "--service", "saju"},
		"SHADOWCUBE_METRICS_ADDR=:"+ops, "SHADOWCUBE_NATS_URL=nats://127.0.0.1:"+natsPort,
		"SHADOWCUBE_USER_KEY_SECRET=0123456789abcdef0123456789abcdef", "SHADOWCUBE_STARTUP_TIMEOUT=1s")
	start([]string{"demo-service", "legacy-ai", "--listen", "127.0.0.1:" + svcPort})
	waitHealthy := func(what string, check func() (int, string)) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, out := check()
			if code == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never healthy: last exit %d: %s", what, code, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitHealthy("tap (image HEALTHCHECK)", func() (int, string) { return probe(":" + ops) })
	waitHealthy("demo-service legacy-ai", func() (int, string) { return probe("", "http://127.0.0.1:"+svcPort+"/healthz") })
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestDockerignore: the build context keeps what `go build` needs (module
// files, every package's Go source, the embedded schemas) and leaves out the
// repository's history and local build output.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			pats = append(pats, l)
		}
	}
	ignored := func(path string) bool {
		out := false
		for _, p := range pats {
			neg := strings.HasPrefix(p, "!")
			p = strings.TrimPrefix(p, "!")
			if dockerMatch(p, path) {
				out = !neg
			}
		}
		return out
	}
	for _, p := range []string{".git/HEAD", "bin/shadowcube"} {
		if !ignored(p) {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
	keep := []string{"go.mod", "go.sum"}
	out, err := exec.Command("git", "-C", "..", "ls-files", "*.go", "*.schema.json").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		// go build skips testdata directories (test fixtures and their
		// generators), so the image build does not need them
		if !strings.HasSuffix(f, "_test.go") && !strings.Contains("/"+f, "/testdata/") {
			keep = append(keep, f)
		}
	}
	if len(keep) < 50 {
		t.Fatalf("only %d files to keep listed by git: broken", len(keep))
	}
	for _, f := range keep {
		if ignored(f) {
			t.Errorf(".dockerignore drops %s, which the build needs", f)
		}
	}
}

// dockerMatch matches a .dockerignore pattern against a slash path: the
// pattern matches the path or one of its parent directories; ** matches any
// number of directories.
func dockerMatch(pat, path string) bool {
	pat = strings.TrimPrefix(strings.TrimSuffix(pat, "/"), "/")
	parts := strings.Split(path, "/")
	for i := 1; i <= len(parts); i++ {
		if globMatch(strings.Split(pat, "/"), parts[:i]) {
			return true
		}
	}
	return false
}

func globMatch(pat, parts []string) bool {
	if len(pat) == 0 {
		return len(parts) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if globMatch(pat[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	ok, _ := filepath.Match(pat[0], parts[0])
	return ok && globMatch(pat[1:], parts[1:])
}
