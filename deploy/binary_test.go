package deploy

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The tests of this package build the binaries exactly as the Dockerfile
// does (its build-stage ENV and `go build` RUN lines, run on the host) once,
// and check the compose and Kubernetes files against that binary.

const (
	testVersion = "deploy-test-v0.0.0"
	testCommit  = "c0ffee1"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	builtBins []string // names built under buildDir (shadowcube, healthprobe)
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	line  int
	cmd   string // upper case: FROM, RUN, ...
	args  string
	stage int // index of the FROM it belongs to
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start, n, stage := 0, 0, -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") { // comment inside a continuation
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		text := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{line: start, cmd: cmd, args: strings.TrimSpace(args), stage: stage})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// envPairs parses `K=V K2=V2` (ENV, ARG with defaults).
func envPairs(s string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			out[k] = ""
			continue
		}
		out[k] = strings.Trim(v, `"'`)
	}
	return out
}

var goBuildOut = regexp.MustCompile(`-o\s+/out/([a-z0-9-]+)\s`)

// staticBinaries runs the Dockerfile's build-stage `go build` lines on the
// host, with the stage's ENV and ARGs (VERSION and COMMIT set to test
// values), writing /out/<name> into a temporary directory. It returns that
// directory.
func staticBinaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "shadowcube-deploy-test-")
		if buildErr != nil {
			return
		}
		env := map[string]string{}
		for _, in := range parseDockerfile(t, "../Dockerfile") {
			if in.stage != 0 {
				continue
			}
			switch in.cmd {
			case "ENV", "ARG":
				for k, v := range envPairs(in.args) {
					env[k] = v
				}
			case "RUN":
				if !strings.Contains(in.args, "go build") {
					continue
				}
				m := goBuildOut.FindStringSubmatch(in.args + " ")
				if m == nil {
					buildErr = fmt.Errorf("Dockerfile:%d: a go build line must write -o /out/<name>", in.line)
					return
				}
				run := in.args
				for strings.HasPrefix(run, "--") { // BuildKit RUN options (--mount=...)
					_, run, _ = strings.Cut(run, " ")
				}
				run = strings.ReplaceAll(run, "/out/", buildDir+"/")
				env["VERSION"], env["COMMIT"] = testVersion, testCommit
				cmd := exec.Command("sh", "-c", run)
				cmd.Dir = ".."
				cmd.Env = os.Environ()
				for k, v := range env {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				if out, err := cmd.CombinedOutput(); err != nil {
					buildErr = fmt.Errorf("Dockerfile:%d: %s: %v\n%s", in.line, run, err, out)
					return
				}
				builtBins = append(builtBins, m[1])
			}
		}
		if len(builtBins) == 0 {
			buildErr = fmt.Errorf("Dockerfile: no `go build ... -o /out/<name>` line in the first stage")
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// command is one node of the binary's command tree, read from --help.
type command struct {
	flags map[string]bool // long names (and single-letter short ones), incl. inherited
	subs  map[string]*command
}

var (
	cliOnce sync.Once
	cliRoot *command
	cliHelp strings.Builder // every help text, for the variables it names
	cliErr  error
)

var (
	flagLine = regexp.MustCompile(`^\s+(?:-([a-zA-Z]), )?--([a-z0-9-]+)`)
	subLine  = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s`)
)

// cli reads the command tree of the Dockerfile-built binary: the
// subcommands listed under "Available Commands:" and the flags under
// "Flags:" and "Global Flags:" of every command's --help.
func cli(t *testing.T) *command {
	t.Helper()
	bin := filepath.Join(staticBinaries(t), "shadowcube")
	cliOnce.Do(func() {
		var walk func(path []string) (*command, error)
		walk = func(path []string) (*command, error) {
			out, err := exec.Command(bin, append(append([]string{}, path...), "--help")...).CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("shadowcube %s --help: %v\n%s", strings.Join(path, " "), err, out)
			}
			cliHelp.Write(out)
			c := &command{flags: map[string]bool{}, subs: map[string]*command{}}
			section := ""
			for _, line := range strings.Split(string(out), "\n") {
				switch {
				case strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " "):
					section = line
					continue
				case line == "":
					section = ""
					continue
				}
				switch section {
				case "Available Commands:":
					if m := subLine.FindStringSubmatch(line); m != nil && m[1] != "help" && m[1] != "completion" {
						c.subs[m[1]] = nil
					}
				case "Flags:", "Global Flags:":
					if m := flagLine.FindStringSubmatch(line); m != nil {
						c.flags["--"+m[2]] = true
						if m[1] != "" {
							c.flags["-"+m[1]] = true
						}
					}
				}
			}
			for name := range c.subs {
				sub, err := walk(append(append([]string{}, path...), name))
				if err != nil {
					return nil, err
				}
				c.subs[name] = sub
			}
			return c, nil
		}
		cliRoot, cliErr = walk(nil)
		if cliErr == nil && len(cliRoot.subs) < 10 {
			cliErr = fmt.Errorf("only %d subcommands read from shadowcube --help: the parser is broken", len(cliRoot.subs))
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliRoot
}

// checkArgs checks a shadowcube argument list (without the program name):
// its subcommand path exists and every flag it passes is one of that
// command's flags. It returns the subcommand path.
func checkArgs(t *testing.T, where string, args []string) []string {
	t.Helper()
	c := cli(t)
	var path []string
	i := 0
	for ; i < len(args); i++ {
		sub, ok := c.subs[args[i]]
		if !ok {
			break
		}
		path = append(path, args[i])
		c = sub
	}
	if len(path) == 0 {
		t.Errorf("%s: %q is not a shadowcube subcommand (have %v)", where, strings.Join(args, " "), sortedKeys(cliRoot.subs))
		return nil
	}
	for _, a := range args[i:] {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(a, "=")
		if !c.flags[name] {
			t.Errorf("%s: shadowcube %s has no flag %s (have %v)", where, strings.Join(path, " "), name, sortedKeys(c.flags))
		}
	}
	return path
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	envOnce sync.Once
	envVars map[string]bool
	envErr  error
)

var helpVar = regexp.MustCompile(`SHADOWCUBE_[A-Z0-9_]*[A-Z0-9]`)

// knownEnv is every SHADOWCUBE_* variable the binary reads: the envconfig
// tags of every struct in the module's non-test Go source (all env structs
// embed, so a tag X is read as SHADOWCUBE_X), plus every variable its
// --help texts name.
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	cli(t)
	envOnce.Do(func() {
		envVars = map[string]bool{}
		fset := token.NewFileSet()
		tags := 0
		envErr = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if name := d.Name(); name == ".git" || name == "deploy" || name == "testdata" || (strings.HasPrefix(name, ".") && path != "..") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				fld, ok := n.(*ast.Field)
				if !ok || fld.Tag == nil {
					return true
				}
				tag := reflect.StructTag(strings.Trim(fld.Tag.Value, "`"))
				if name, ok := tag.Lookup("envconfig"); ok && name != "" {
					envVars["SHADOWCUBE_"+strings.ToUpper(name)] = true
					tags++
				}
				return true
			})
			return nil
		})
		if envErr == nil && tags < 50 {
			envErr = fmt.Errorf("only %d envconfig tags found in the source: the scan is broken", tags)
		}
		for _, v := range helpVar.FindAllString(cliHelp.String(), -1) {
			envVars[v] = true
		}
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return envVars
}

// checkEnv reports every SHADOWCUBE_* name the binary does not read.
func checkEnv(t *testing.T, where string, names []string) {
	t.Helper()
	known := knownEnv(t)
	for _, n := range names {
		if strings.HasPrefix(n, "SHADOWCUBE_") && !known[n] {
			t.Errorf("%s: %s is not a variable shadowcube reads", where, n)
		}
	}
}

// pinnedImage: an image reference carries a tag other than latest, or a
// digest (scratch needs neither).
func pinnedImage(ref string) error {
	if ref == "scratch" {
		return nil
	}
	if strings.Contains(ref, "@sha256:") {
		return nil
	}
	name := ref
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return fmt.Errorf("image %q has no tag", ref)
	case tag == "latest":
		return fmt.Errorf("image %q uses :latest", ref)
	case strings.Contains(tag, "$"):
		return fmt.Errorf("image %q: tag is a variable", ref)
	}
	return nil
}
