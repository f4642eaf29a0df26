package deploy

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/routes"
)

// composeVar is docker compose's ${NAME}, ${NAME:-default}, ${NAME-default}
// and ${NAME:?err}; expand replaces each by its default (empty when none).
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}`)

func expand(s string) string {
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		return composeVar.FindStringSubmatch(m)[2]
	})
}

type composeService struct {
	Image       string         `yaml:"image"`
	Command     []string       `yaml:"command"`
	Entrypoint  []string       `yaml:"entrypoint"`
	Environment map[string]any `yaml:"environment"`
	Volumes     []string       `yaml:"volumes"`
	DependsOn   yaml.Node      `yaml:"depends_on"`
	Healthcheck *struct {
		Test    []string `yaml:"test"`
		Disable bool     `yaml:"disable"`
	} `yaml:"healthcheck"`
	Profiles []string `yaml:"profiles"`
}

func loadCompose(t *testing.T) map[string]composeService {
	t.Helper()
	data, err := os.ReadFile("compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Services) == 0 {
		t.Fatal("compose file has no services")
	}
	return c.Services
}

func isShadowcube(s composeService) bool {
	return strings.HasPrefix(expand(s.Image), "shadowcube:")
}

// TestComposeStack checks the compose file runs the whole stack: the
// infrastructure, the demo systems under test, every pipeline stage,
// Prometheus and Grafana, with logical WAL on the source and JetStream on.
func TestComposeStack(t *testing.T) {
	svcs := loadCompose(t)
	byCmd := map[string][]string{}
	for name, s := range svcs {
		if isShadowcube(s) && len(s.Command) > 0 {
			byCmd[s.Command[0]] = append(byCmd[s.Command[0]], name)
		}
	}
	for _, cmd := range []string{"tap", "cdc", "sync", "shadow", "compare", "demo-service"} {
		if len(byCmd[cmd]) == 0 {
			t.Errorf("no service runs shadowcube %s", cmd)
		}
	}
	demo := map[string]bool{}
	for _, name := range byCmd["demo-service"] {
		demo[svcs[name].Command[1]] = true
	}
	for _, d := range []string{"legacy-saju", "saju-cube", "legacy-ai", "ai-cube"} {
		if !demo[d] {
			t.Errorf("no service runs demo-service %s", d)
		}
	}
	for _, name := range []string{"nats", "legacy-postgres", "cube-postgres", "prometheus", "grafana"} {
		if _, ok := svcs[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	if !strings.Contains(strings.Join(svcs["legacy-postgres"].Command, " "), "wal_level=logical") {
		t.Error("legacy-postgres must run with wal_level=logical (CDC source)")
	}
	if !strings.Contains(strings.Join(svcs["nats"].Command, " "), "-js") {
		t.Error("nats must run with JetStream (-js)")
	}
	for _, want := range []string{"nats-data:/data", "legacy-pg:", "cube-pg:"} {
		found := false
		for _, s := range svcs {
			for _, v := range s.Volumes {
				found = found || strings.HasPrefix(v, want)
			}
		}
		if !found {
			t.Errorf("no named volume %s: state must persist", want)
		}
	}
	// A long-running service without a healthcheck of its own relies on the
	// image's (healthprobe on :9090); a demo-service listens elsewhere and
	// must override it with its own URL.
	for _, name := range byCmd["demo-service"] {
		s := svcs[name]
		listen := flagValue(s.Command, "--listen")
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 3 || s.Healthcheck.Test[1] != "healthprobe" ||
			!strings.HasSuffix(s.Healthcheck.Test[2], listen+"/healthz") || listen == "" {
			t.Errorf("%s: healthcheck %v must be [CMD healthprobe http://127.0.0.1%s/healthz]", name, s.Healthcheck, listen)
		}
	}
}

func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func envNames(env map[string]any) []string {
	var out []string
	for k := range env {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestComposeCrossReferences checks every name the compose file uses
// against what it points to: shadowcube subcommands and flags against the
// binary built as the Dockerfile builds it, SHADOWCUBE_* variables against
// the ones the binary reads, images pinned by tag, mounted files present,
// depends_on and URLs naming services, the mapping's database variables set
// on the services that read the mapping, the routes' cube URLs naming
// services, and every stage scraped by Prometheus.
func TestComposeCrossReferences(t *testing.T) {
	svcs := loadCompose(t)
	for _, name := range sortedKeys(svcs) {
		s := svcs[name]
		where := "compose " + name
		if err := pinnedImage(expand(s.Image)); err != nil {
			t.Errorf("%s: %v", where, err)
		}
		checkEnv(t, where, envNames(s.Environment))
		var deps map[string]any
		var depList []string
		if s.DependsOn.Kind == yaml.MappingNode {
			s.DependsOn.Decode(&deps)
		} else if s.DependsOn.Kind == yaml.SequenceNode {
			s.DependsOn.Decode(&depList)
		}
		for _, d := range append(sortedKeys(deps), depList...) {
			if _, ok := svcs[d]; !ok {
				t.Errorf("%s: depends_on %s: no such service", where, d)
			}
		}
		for _, v := range s.Volumes {
			host, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(host, ".") {
				continue
			}
			p := filepath.Join("compose", host)
			if _, err := os.Stat(p); err != nil {
				// deploy/prometheus and deploy/grafana come from the
				// monitoring work; on a branch without them at all they
				// are checked once merged.
				if top := strings.Split(filepath.ToSlash(p), "/")[0]; (top == "prometheus" || top == "grafana") && !exists(top) {
					t.Logf("%s: %s: %s not on this branch yet", where, v, top)
					continue
				}
				t.Errorf("%s: volume %s: %v", where, v, err)
			}
		}
		if !isShadowcube(s) {
			continue
		}
		if len(s.Entrypoint) > 0 {
			t.Errorf("%s: overrides the image's ENTRYPOINT [shadowcube]", where)
		}
		path := checkArgs(t, where, s.Command)
		for _, flag := range []string{"--upstream", "--saju-url", "--ai-url", "--cube-url"} {
			if u := flagValue(s.Command, flag); u != "" {
				checkServiceURL(t, where+" "+flag, u, svcs)
			}
		}
		for _, f := range []string{flagValue(s.Command, "--routes"), envString(s.Environment, "SHADOWCUBE_ROUTES_FILE")} {
			if f != "" && len(path) > 0 && (path[0] == "tap" || path[0] == "shadow" || path[0] == "compare") {
				checkMounted(t, where, s, f)
			}
		}
		if len(path) > 0 && (path[0] == "sync" || path[0] == "reconcile") {
			m := flagValue(s.Command, "--mapping")
			if m == "" {
				m = envString(s.Environment, "SHADOWCUBE_MAPPING_FILE")
			}
			checkMounted(t, where, s, m)
			mapping, err := consumers.LoadMapping("compose/mapping.yml")
			if err != nil {
				t.Fatal(err)
			}
			vars := []string{mapping.Source.DatabaseURLEnv}
			for _, tg := range mapping.Targets {
				vars = append(vars, tg.DatabaseURLEnv)
				if !strings.Contains(strings.Join(s.Command, " "), "--target "+tg.Name) {
					t.Errorf("%s: does not sync mapping target %s (--target)", where, tg.Name)
				}
			}
			for _, v := range vars {
				if envString(s.Environment, v) == "" {
					t.Errorf("%s: the mapping reads its database URL from %s, which the service does not set", where, v)
				}
			}
		}
	}
	rf, err := routes.Load("compose/routes.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range rf.Services {
		checkServiceURL(t, "compose/routes.yml service "+svc.Name+" cube_url", svc.CubeURL, svcs)
	}
	// Prometheus scrapes every long-running stage.
	data, err := os.ReadFile("compose/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			DNS []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
			Static []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &prom); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, d := range sc.DNS {
			for _, n := range d.Names {
				scraped[n] = true
				if d.Port != 9090 {
					t.Errorf("prometheus.yml: %s scraped on %d, the image's ops port is 9090", n, d.Port)
				}
			}
		}
		for _, st := range sc.Static {
			for _, tg := range st.Targets {
				host, _, _ := strings.Cut(tg, ":")
				scraped[host] = true
			}
		}
	}
	for n := range scraped {
		if _, ok := svcs[n]; !ok {
			t.Errorf("prometheus.yml scrapes %s: no such service", n)
		}
	}
	for _, name := range sortedKeys(svcs) {
		s := svcs[name]
		if isShadowcube(s) && len(s.Profiles) == 0 && !scraped[name] {
			t.Errorf("prometheus.yml does not scrape %s", name)
		}
	}
	if len(prom.RuleFiles) != 1 || !mountedAt(svcs["prometheus"], "../prometheus/rules.yml", prom.RuleFiles[0]) {
		t.Errorf("prometheus.yml rule_files %v: want deploy/prometheus/rules.yml mounted at that path", prom.RuleFiles)
	}
	for _, want := range []string{"../grafana/provisioning/datasources", "../grafana/provisioning/dashboards", "../grafana/dashboards"} {
		if !mountedAt(svcs["grafana"], want, "") {
			t.Errorf("grafana does not mount %s", want)
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func envString(env map[string]any, k string) string {
	v, _ := env[k].(string)
	return expand(v)
}

// mountedAt: the service mounts host path src (at dst when dst is set).
func mountedAt(s composeService, src, dst string) bool {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[0] == src && (dst == "" || parts[1] == dst) {
			return true
		}
	}
	return false
}

// checkMounted: a file a command reads is mounted from deploy/compose.
func checkMounted(t *testing.T, where string, s composeService, file string) {
	t.Helper()
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == file {
			if _, err := os.Stat(filepath.Join("compose", parts[0])); err != nil {
				t.Errorf("%s: %s: %v", where, file, err)
			}
			return
		}
	}
	t.Errorf("%s: reads %s, which no volume mounts", where, file)
}

// checkServiceURL: a URL's host is a compose service.
func checkServiceURL(t *testing.T, where, raw string, svcs map[string]composeService) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		t.Errorf("%s: %q is not a URL", where, raw)
		return
	}
	if _, ok := svcs[u.Hostname()]; !ok {
		t.Errorf("%s: %s: host %s is no compose service", where, raw, u.Hostname())
	}
}
