package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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

// obj is one Kubernetes manifest, decoded generically.
type obj map[string]any

func (o obj) kind() string { s, _ := o["kind"].(string); return s }
func (o obj) name() string { s, _ := get(o, "metadata", "name").(string); return s }
func (o obj) id() string   { return o.kind() + "/" + o.name() }

// get walks maps by key.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			if o, ok2 := v.(obj); ok2 {
				m = o
			} else {
				return nil
			}
		}
		v = m[k]
	}
	return v
}

func list(v any) []any { l, _ := v.([]any); return l }
func str(v any) string { s, _ := v.(string); return s }
func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}
func smap(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			out[k] = fmt.Sprint(x)
		}
	}
	return out
}

func readDocs(t *testing.T, path string) []obj {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []obj
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if o != nil {
			out = append(out, obj(o))
		}
	}
	return out
}

// kustomization is what the checks need from a kustomization.yaml.
type kustomization struct {
	dir       string
	images    map[string]map[string]string // name -> newName/newTag/digest
	cmFiles   map[string]map[string]string // generated ConfigMap -> key -> file
	secretGen map[string]bool
	objs      []obj // every resource, base first, after delete patches
}

// loadKustomization reads dir/kustomization.yaml and everything it pulls in:
// resources (files, or directories holding a kustomization), patches,
// generators' files, images. Every referenced file must exist.
func loadKustomization(t *testing.T, dir string) *kustomization {
	t.Helper()
	path := filepath.Join(dir, "kustomization.yaml")
	docs := readDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: want one document", path)
	}
	k := docs[0]
	if k.kind() != "Kustomization" {
		t.Errorf("%s: kind %q, want Kustomization", path, k.kind())
	}
	out := &kustomization{dir: dir, images: map[string]map[string]string{}, cmFiles: map[string]map[string]string{}, secretGen: map[string]bool{}}
	known := map[string]bool{"apiVersion": true, "kind": true, "namespace": true, "labels": true, "resources": true,
		"patches": true, "configMapGenerator": true, "secretGenerator": true, "images": true, "components": true}
	for key := range k {
		if !known[key] {
			t.Errorf("%s: field %s is not checked by this test (add it here)", path, key)
		}
	}
	for _, r := range strs(k["resources"]) {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		switch {
		case err != nil:
			t.Errorf("%s: resource %s: %v", path, r, err)
		case st.IsDir():
			sub := loadKustomization(t, p)
			out.objs = append(out.objs, sub.objs...)
			for n, im := range sub.images {
				out.images[n] = im
			}
			for n, f := range sub.cmFiles {
				out.cmFiles[n] = f
			}
			for n := range sub.secretGen {
				out.secretGen[n] = true
			}
		default:
			out.objs = append(out.objs, readDocs(t, p)...)
		}
	}
	for _, g := range list(k["configMapGenerator"]) {
		name := str(get(g, "name"))
		out.cmFiles[name] = map[string]string{}
		for _, f := range strs(get(g, "files")) {
			key, file, ok := strings.Cut(f, "=")
			if !ok {
				key, file = filepath.Base(f), f
			}
			if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
				t.Errorf("%s: configMapGenerator %s: %v", path, name, err)
			}
			out.cmFiles[name][key] = filepath.Join(dir, file)
		}
	}
	for _, g := range list(k["secretGenerator"]) {
		out.secretGen[str(get(g, "name"))] = true
		for _, f := range strs(get(g, "files")) {
			_, file, ok := strings.Cut(f, "=")
			if !ok {
				file = f
			}
			if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
				t.Errorf("%s: secretGenerator: %v", path, err)
			}
		}
	}
	for _, im := range list(k["images"]) {
		out.images[str(get(im, "name"))] = smap(im)
	}
	for _, p := range list(k["patches"]) {
		pp := str(get(p, "path"))
		if pp == "" {
			t.Errorf("%s: only file patches (path:) are checked", path)
			continue
		}
		for _, d := range readDocs(t, filepath.Join(dir, pp)) {
			target := -1
			for i, o := range out.objs {
				if o.kind() == d.kind() && o.name() == d.name() {
					target = i
				}
			}
			if target < 0 {
				t.Errorf("%s: patch %s: %s matches no resource", path, pp, d.id())
				continue
			}
			if str(d["$patch"]) == "delete" {
				out.objs = append(out.objs[:target], out.objs[target+1:]...)
			}
		}
	}
	return out
}

// image resolves a container image through the kustomization's images.
func (k *kustomization) image(ref string) string {
	name, tag, _ := strings.Cut(ref, ":")
	if im, ok := k.images[name]; ok {
		if im["newName"] != "" {
			name = im["newName"]
		}
		if im["newTag"] != "" {
			tag = im["newTag"]
		}
		if im["digest"] != "" {
			return name + "@" + im["digest"]
		}
	}
	if tag == "" {
		return name
	}
	return name + ":" + tag
}

func (k *kustomization) find(kind, name string) obj {
	for _, o := range k.objs {
		if o.kind() == kind && o.name() == name {
			return o
		}
	}
	return nil
}

func (k *kustomization) all(kind string) []obj {
	var out []obj
	for _, o := range k.objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// TestKubernetesBase checks deploy/k8s/base: references resolve (files,
// Secrets and their keys, ConfigMaps and their keys, $(VAR)s, Services and
// selectors, HPAs, the ServiceMonitor), every shadowcube command, flag and
// variable exists in the binary, images are pinned, every container has
// resources, the stages have /healthz and /readyz probes on the ops port,
// cdc and sync run one replica with Recreate and are never autoscaled,
// one-shot commands (reconcile) run as CronJobs, and NATS is a 3-node
// StatefulSet with anti-affinity, volumes and a PDB.
func TestKubernetesBase(t *testing.T) {
	k := loadKustomization(t, "k8s/base")
	checkKustomization(t, k)
}

// TestKubernetesKEDAOverlay checks overlays/keda on top of the same checks:
// the ScaledObjects target shadow and compare, whose base HPAs are gone,
// with nats-jetstream triggers on the real durable consumers (the names
// shadow and compare derive from their --durable and the routes file) of
// the right streams, read from the NATS monitoring Service.
func TestKubernetesKEDAOverlay(t *testing.T) {
	k := loadKustomization(t, "k8s/overlays/keda")
	checkKustomization(t, k)
	durables := stageDurables(t, k)
	scaled := map[string]bool{}
	for _, so := range k.all("ScaledObject") {
		where := "keda " + so.id()
		target := str(get(so, "spec", "scaleTargetRef", "name"))
		d := k.find("Deployment", target)
		if d == nil {
			t.Errorf("%s: scaleTargetRef %s: no such Deployment", where, target)
			continue
		}
		scaled[target] = true
		for _, h := range k.all("HorizontalPodAutoscaler") {
			if str(get(h, "spec", "scaleTargetRef", "name")) == target {
				t.Errorf("%s: %s also has %s: two autoscalers fight", where, target, h.id())
			}
		}
		want := durables[target]
		got := map[string]bool{}
		for _, tr := range list(get(so, "spec", "triggers")) {
			if str(get(tr, "type")) != "nats-jetstream" {
				t.Errorf("%s: trigger type %q, want nats-jetstream", where, get(tr, "type"))
				continue
			}
			md := smap(get(tr, "metadata"))
			for _, f := range []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"} {
				if md[f] == "" {
					t.Errorf("%s: trigger metadata %s missing", where, f)
				}
			}
			host, port, _ := strings.Cut(md["natsServerMonitoringEndpoint"], ":")
			svc := k.find("Service", strings.Split(host, ".")[0])
			portOK := false
			for _, p := range list(get(svc, "spec", "ports")) {
				portOK = portOK || fmt.Sprint(get(p, "port")) == port
			}
			if svc == nil || !portOK {
				t.Errorf("%s: natsServerMonitoringEndpoint %s: no Service with that port", where, md["natsServerMonitoringEndpoint"])
			}
			key := md["stream"] + "/" + md["consumer"]
			if _, ok := want[key]; !ok {
				t.Errorf("%s: consumer %s: %s reads %v", where, key, target, sortedKeys(want))
			}
			got[key] = true
		}
		for key := range want {
			if !got[key] {
				t.Errorf("%s: no trigger for %s's consumer %s", where, target, key)
			}
		}
	}
	for _, n := range []string{"shadow", "compare"} {
		if !scaled[n] {
			t.Errorf("overlay keda: no ScaledObject for %s", n)
		}
	}
}

// stageDurables: the stream/consumer pairs the shadow and compare
// Deployments read: shadow: <durable>-<service> on LEGACY_REQUESTS per
// service of the routes file; compare: <durable> on SHADOW_RESULTS.
func stageDurables(t *testing.T, k *kustomization) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, d := range k.all("Deployment") {
		for _, c := range list(get(d, "spec", "template", "spec", "containers")) {
			args := strs(get(c, "args"))
			if len(args) == 0 {
				continue
			}
			durable := flagValue(args, "--durable")
			switch args[0] {
			case "shadow":
				if durable == "" {
					durable = "shadow"
				}
				rf, err := routes.Load(k.configFile(t, d, flagValue(args, "--routes")))
				if err != nil {
					t.Fatal(err)
				}
				out[d.name()] = map[string]bool{}
				for _, s := range rf.Services {
					out[d.name()]["LEGACY_REQUESTS/"+durable+"-"+s.Name] = true
				}
			case "compare":
				if durable == "" {
					durable = "comparator"
				}
				out[d.name()] = map[string]bool{"SHADOW_RESULTS/" + durable: true}
			}
		}
	}
	return out
}

// configFile maps a path a container reads to the generator file behind
// the ConfigMap volume mounted over it.
func (k *kustomization) configFile(t *testing.T, w obj, path string) string {
	t.Helper()
	spec := get(podTemplate(w), "spec")
	vols := map[string]string{}
	for _, v := range list(get(spec, "volumes")) {
		if cm := str(get(v, "configMap", "name")); cm != "" {
			vols[str(get(v, "name"))] = cm
		}
	}
	for _, c := range list(get(spec, "containers")) {
		for _, m := range list(get(c, "volumeMounts")) {
			dir := str(get(m, "mountPath"))
			if cm, ok := vols[str(get(m, "name"))]; ok && filepath.Dir(path) == dir {
				if f := k.cmFiles[cm][filepath.Base(path)]; f != "" {
					return f
				}
			}
		}
	}
	t.Errorf("%s: %s is in no mounted generated ConfigMap", w.id(), path)
	return "/nonexistent"
}

func checkKustomization(t *testing.T, k *kustomization) {
	t.Helper()
	secrets := map[string]map[string]bool{}
	for _, s := range k.all("Secret") {
		secrets[s.name()] = map[string]bool{}
		for _, f := range []string{"data", "stringData"} {
			for key := range smap(s[f]) {
				secrets[s.name()][key] = true
			}
		}
	}
	for _, want := range []string{"shadowcube-nats", "shadowcube-hmac", "shadowcube-ui-token"} {
		if secrets[want] == nil {
			t.Errorf("%s: Secret %s (NATS credentials, HMAC secret, UI token) missing", k.dir, want)
		}
	}
	configMaps := map[string]map[string]bool{}
	for _, c := range k.all("ConfigMap") {
		configMaps[c.name()] = map[string]bool{}
		for key := range smap(c["data"]) {
			configMaps[c.name()][key] = true
		}
	}
	for n, files := range k.cmFiles {
		configMaps[n] = map[string]bool{}
		for key := range files {
			configMaps[n][key] = true
		}
	}
	refKey := func(where, kind string, have map[string]map[string]bool, name, key string) {
		if have[name] == nil {
			t.Errorf("%s: %s %s does not exist in %s", where, kind, name, k.dir)
		} else if key != "" && !have[name][key] {
			t.Errorf("%s: %s %s has no key %s (has %v)", where, kind, name, key, sortedKeys(have[name]))
		}
	}
	autoscaled := map[string]string{}
	for _, h := range append(k.all("HorizontalPodAutoscaler"), k.all("ScaledObject")...) {
		target := str(get(h, "spec", "scaleTargetRef", "name"))
		if k.find("Deployment", target) == nil && k.find("StatefulSet", target) == nil {
			t.Errorf("%s: scaleTargetRef %s: no such workload", h.id(), target)
		}
		autoscaled[target] = h.id()
	}
	var podLabels []map[string]string
	stages := map[string][]obj{}
	for _, w := range append(append(k.all("Deployment"), k.all("StatefulSet")...), k.all("CronJob")...) {
		tmpl := podTemplate(w)
		spec := get(tmpl, "spec")
		labels := smap(get(tmpl, "metadata", "labels"))
		oneShot := w.kind() == "CronJob"
		if !oneShot {
			podLabels = append(podLabels, labels)
			if !selects(smap(get(w, "spec", "selector", "matchLabels")), labels) {
				t.Errorf("%s: selector does not match its pod labels", w.id())
			}
		}
		vols := map[string]any{}
		for _, v := range list(get(spec, "volumes")) {
			vols[str(get(v, "name"))] = v
			if s := str(get(v, "secret", "secretName")); s != "" {
				refKey(w.id()+" volume", "Secret", secrets, s, "")
			}
			if c := str(get(v, "configMap", "name")); c != "" {
				refKey(w.id()+" volume", "ConfigMap", configMaps, c, "")
				for _, it := range list(get(v, "configMap", "items")) {
					refKey(w.id()+" volume", "ConfigMap", configMaps, c, str(get(it, "key")))
				}
			}
		}
		claims := map[string]bool{}
		for _, c := range list(get(w, "spec", "volumeClaimTemplates")) {
			claims[str(get(c, "metadata", "name"))] = true
		}
		for _, c := range list(get(spec, "containers")) {
			cname := str(get(c, "name"))
			where := w.id() + " container " + cname
			img := k.image(str(get(c, "image")))
			if err := pinnedImage(img); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			res := get(c, "resources")
			if get(res, "requests", "cpu") == nil || get(res, "requests", "memory") == nil || get(res, "limits", "memory") == nil {
				t.Errorf("%s: resources need requests.cpu, requests.memory and limits.memory", where)
			}
			for _, m := range list(get(c, "volumeMounts")) {
				n := str(get(m, "name"))
				if vols[n] == nil && !claims[n] {
					t.Errorf("%s: volumeMount %s: no such volume", where, n)
				}
			}
			ports := map[string]string{}
			for _, p := range list(get(c, "ports")) {
				ports[str(get(p, "name"))] = fmt.Sprint(get(p, "containerPort"))
			}
			defined := map[string]bool{}
			var names []string
			env := map[string]string{}
			for _, e := range list(get(c, "env")) {
				n := str(get(e, "name"))
				for _, m := range envRef.FindAllStringSubmatch(str(get(e, "value")), -1) {
					if !defined[m[1]] {
						t.Errorf("%s: %s uses $(%s), not defined before it", where, n, m[1])
					}
				}
				if s := get(e, "valueFrom", "secretKeyRef"); s != nil {
					refKey(where+" env "+n, "Secret", secrets, str(get(s, "name")), str(get(s, "key")))
				}
				if s := get(e, "valueFrom", "configMapKeyRef"); s != nil {
					refKey(where+" env "+n, "ConfigMap", configMaps, str(get(s, "name")), str(get(s, "key")))
				}
				defined[n] = true
				names = append(names, n)
				env[n] = str(get(e, "value"))
			}
			for _, e := range list(get(c, "envFrom")) {
				if s := str(get(e, "secretRef", "name")); s != "" {
					refKey(where+" envFrom", "Secret", secrets, s, "")
				}
				if s := str(get(e, "configMapRef", "name")); s != "" {
					refKey(where+" envFrom", "ConfigMap", configMaps, s, "")
				}
			}
			if !strings.HasPrefix(str(get(c, "image")), "shadowcube") {
				continue
			}
			// A shadowcube stage.
			if cmd := strs(get(c, "command")); len(cmd) > 0 {
				t.Errorf("%s: command %v overrides the image's ENTRYPOINT; use args", where, cmd)
			}
			args := strs(get(c, "args"))
			path := checkArgs(t, where, args)
			checkEnv(t, where, names)
			if len(path) > 0 {
				stages[path[0]] = append(stages[path[0]], w)
				if longRunning[path[0]] == oneShot {
					t.Errorf("%s: shadowcube %s belongs in a %s", where, path[0], map[bool]string{true: "Deployment or StatefulSet", false: "CronJob"}[longRunning[path[0]]])
				}
			}
			for _, f := range []string{"--routes", "--mapping"} {
				if p := flagValue(args, f); p != "" {
					k.configFile(t, w, p)
				}
			}
			if len(path) > 0 && (path[0] == "sync" || path[0] == "reconcile") {
				m, err := consumers.LoadMapping(k.configFile(t, w, flagValue(args, "--mapping")))
				if err != nil {
					t.Fatal(err)
				}
				vars := []string{m.Source.DatabaseURLEnv}
				for _, tg := range m.Targets {
					vars = append(vars, tg.DatabaseURLEnv)
				}
				for _, v := range vars {
					if !defined[v] {
						t.Errorf("%s: the mapping reads %s, which the container does not set", where, v)
					}
				}
			}
			if oneShot {
				continue
			}
			if a, ok := env["SHADOWCUBE_METRICS_ADDR"]; ok && a != ":9090" {
				t.Errorf("%s: SHADOWCUBE_METRICS_ADDR=%s: the probes and ServiceMonitor use :9090", where, a)
			}
			if ports["metrics"] != "9090" {
				t.Errorf("%s: needs port metrics: 9090 (the image's SHADOWCUBE_METRICS_ADDR)", where)
			}
			for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				hg := get(c, probe, "httpGet")
				if str(get(hg, "path")) != want || fmt.Sprint(get(hg, "port")) != "metrics" {
					t.Errorf("%s: %s must be httpGet %s on port metrics, is %v", where, probe, want, hg)
				}
			}
		}
	}
	// cdc: one reader per slot; sync: one ordered applier per cube.
	slots := map[string]string{}
	for _, w := range stages["cdc"] {
		checkSingleton(t, w, autoscaled)
		slot := "shadowcube"
		for _, c := range list(get(w, "spec", "template", "spec", "containers")) {
			for _, e := range list(get(c, "env")) {
				if str(get(e, "name")) == "SHADOWCUBE_CDC_SLOT" {
					slot = str(get(e, "value"))
				}
			}
		}
		if other, ok := slots[slot]; ok {
			t.Errorf("%s and %s read the same slot %s", other, w.id(), slot)
		}
		slots[slot] = w.id()
	}
	targets := map[string]string{}
	for _, w := range stages["sync"] {
		checkSingleton(t, w, autoscaled)
		for _, c := range list(get(w, "spec", "template", "spec", "containers")) {
			args := strs(get(c, "args"))
			n := strings.Count(" "+strings.Join(args, " ")+" ", " --target ")
			if n != 1 {
				t.Errorf("%s: want exactly one --target (one applier per cube), have %d", w.id(), n)
			}
			tg := flagValue(args, "--target")
			if other, ok := targets[tg]; ok {
				t.Errorf("%s and %s both apply target %s", other, w.id(), tg)
			}
			targets[tg] = w.id()
		}
	}
	for _, st := range []string{"tap", "cdc", "sync", "shadow", "compare", "reconcile"} {
		if len(stages[st]) == 0 {
			t.Errorf("%s: no workload runs shadowcube %s", k.dir, st)
		}
	}
	for _, st := range []string{"shadow", "compare"} {
		for _, w := range stages[st] {
			if autoscaled[w.name()] == "" {
				t.Errorf("%s: %s is not autoscaled", k.dir, w.id())
			}
		}
	}
	// Services select pods; the ServiceMonitor scrapes every stage.
	scrapedSvcs := map[string]bool{}
	monitors := k.all("ServiceMonitor")
	if len(monitors) == 0 {
		t.Errorf("%s: no ServiceMonitor", k.dir)
	}
	for _, svc := range k.all("Service") {
		sel := smap(get(svc, "spec", "selector"))
		matched := false
		for _, l := range podLabels {
			matched = matched || selects(sel, l)
		}
		if !matched {
			t.Errorf("%s: selector %v matches no pods", svc.id(), sel)
		}
		for _, sm := range monitors {
			if !selects(smap(get(sm, "spec", "selector", "matchLabels")), smap(get(svc, "metadata", "labels"))) {
				continue
			}
			for _, ep := range list(get(sm, "spec", "endpoints")) {
				for _, p := range list(get(svc, "spec", "ports")) {
					if str(get(p, "name")) == str(get(ep, "port")) {
						scrapedSvcs[svc.name()] = true
					}
				}
			}
		}
	}
	for st, ws := range stages {
		if !longRunning[st] {
			continue
		}
		for _, w := range ws {
			ok := false
			for _, svc := range k.all("Service") {
				ok = ok || (scrapedSvcs[svc.name()] && selects(smap(get(svc, "spec", "selector")), smap(get(w, "spec", "template", "metadata", "labels"))))
			}
			if !ok {
				t.Errorf("%s (%s): no ServiceMonitor scrapes it", w.id(), st)
			}
		}
	}
	for _, pdb := range k.all("PodDisruptionBudget") {
		sel := smap(get(pdb, "spec", "selector", "matchLabels"))
		matched := false
		for _, l := range podLabels {
			matched = matched || selects(sel, l)
		}
		if !matched {
			t.Errorf("%s: selector %v matches no pods", pdb.id(), sel)
		}
	}
	checkNATS(t, k)
}

// longRunning: the commands that serve /healthz, /readyz and /metrics and
// run until stopped; the others are one-shot (CronJob).
var longRunning = map[string]bool{"tap": true, "cdc": true, "sync": true, "shadow": true, "compare": true, "demo-service": true}

// podTemplate is a workload's pod template (Deployment, StatefulSet:
// spec.template; CronJob: spec.jobTemplate.spec.template).
func podTemplate(w obj) any {
	if w.kind() == "CronJob" {
		return get(w, "spec", "jobTemplate", "spec", "template")
	}
	return get(w, "spec", "template")
}

func checkSingleton(t *testing.T, w obj, autoscaled map[string]string) {
	t.Helper()
	if r := fmt.Sprint(get(w, "spec", "replicas")); r != "1" {
		t.Errorf("%s: replicas %s, want 1", w.id(), r)
	}
	if s := str(get(w, "spec", "strategy", "type")); s != "Recreate" {
		t.Errorf("%s: strategy %q, want Recreate (never two at once)", w.id(), s)
	}
	if a := autoscaled[w.name()]; a != "" {
		t.Errorf("%s: autoscaled by %s; it must run exactly one", w.id(), a)
	}
}

var natsRoute = regexp.MustCompile(`nats://([a-z0-9-]+)-(\d+)\.([a-z0-9-]+):6222`)

// checkNATS: a 3-node JetStream StatefulSet with required anti-affinity on
// the host, a volume per node, a PDB keeping the quorum, routes naming the
// three pods through the StatefulSet's headless Service, and the stages'
// NATS URL pointing at a Service of it.
func checkNATS(t *testing.T, k *kustomization) {
	t.Helper()
	sts := k.find("StatefulSet", "nats")
	if sts == nil {
		t.Fatalf("%s: no StatefulSet nats", k.dir)
	}
	if r := fmt.Sprint(get(sts, "spec", "replicas")); r != "3" {
		t.Errorf("nats: replicas %s, want 3", r)
	}
	labels := smap(get(sts, "spec", "template", "metadata", "labels"))
	aa := list(get(sts, "spec", "template", "spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution"))
	if len(aa) == 0 || str(get(aa[0], "topologyKey")) != "kubernetes.io/hostname" || !selects(smap(get(aa[0], "labelSelector", "matchLabels")), labels) {
		t.Errorf("nats: want required pod anti-affinity on kubernetes.io/hostname selecting its own pods")
	}
	if len(list(get(sts, "spec", "volumeClaimTemplates"))) == 0 {
		t.Errorf("nats: no volumeClaimTemplates: JetStream state must persist per node")
	}
	pdbOK := false
	for _, pdb := range k.all("PodDisruptionBudget") {
		if selects(smap(get(pdb, "spec", "selector", "matchLabels")), labels) && fmt.Sprint(get(pdb, "spec", "maxUnavailable")) == "1" {
			pdbOK = true
		}
	}
	if !pdbOK {
		t.Errorf("nats: want a PDB with maxUnavailable: 1 (2 of 3 keep the R3 quorum)")
	}
	headless := k.find("Service", str(get(sts, "spec", "serviceName")))
	if headless == nil || str(get(headless, "spec", "clusterIP")) != "None" {
		t.Errorf("nats: serviceName %v must be a headless Service", get(sts, "spec", "serviceName"))
	}
	var conf string
	for _, v := range list(get(sts, "spec", "template", "spec", "volumes")) {
		if cm := str(get(v, "configMap", "name")); cm != "" {
			if c := k.find("ConfigMap", cm); c != nil {
				conf = smap(c["data"])["nats.conf"]
			}
		}
	}
	if !strings.Contains(conf, "jetstream") {
		t.Errorf("nats: nats.conf has no jetstream block")
	}
	pods := map[string]bool{}
	for _, m := range natsRoute.FindAllStringSubmatch(conf, -1) {
		if m[1] != sts.name() || m[3] != headless.name() {
			t.Errorf("nats.conf route %s: want %s-<i>.%s", m[0], sts.name(), headless.name())
		}
		pods[m[2]] = true
	}
	if len(pods) != 3 || !pods["0"] || !pods["1"] || !pods["2"] {
		t.Errorf("nats.conf routes name pods %v, want 0, 1, 2", sortedKeys(pods))
	}
	for _, w := range k.all("Deployment") {
		for _, c := range list(get(w, "spec", "template", "spec", "containers")) {
			for _, e := range list(get(c, "env")) {
				if str(get(e, "name")) != "SHADOWCUBE_NATS_URL" {
					continue
				}
				u := str(get(e, "value"))
				host := u[strings.LastIndex(u, "@")+1:]
				host = strings.TrimPrefix(host, "nats://")
				host, port, _ := strings.Cut(host, ":")
				svc := k.find("Service", host)
				portOK := false
				for _, p := range list(get(svc, "spec", "ports")) {
					portOK = portOK || fmt.Sprint(get(p, "port")) == port
				}
				if svc == nil || !selects(smap(get(svc, "spec", "selector")), labels) || !portOK {
					t.Errorf("%s: SHADOWCUBE_NATS_URL %s: not a port of a Service of the NATS StatefulSet", w.id(), u)
				}
			}
		}
	}
}

// TestKubernetesFilesAllUsed: every manifest under deploy/k8s is pulled in
// by its directory's kustomization.yaml (a file nobody references is never
// applied and never checked).
func TestKubernetesFilesAllUsed(t *testing.T) {
	used := map[string]bool{}
	var walk func(dir string)
	walk = func(dir string) {
		kf := filepath.Join(dir, "kustomization.yaml")
		used[kf] = true
		k := readDocs(t, kf)[0]
		for _, r := range strs(k["resources"]) {
			p := filepath.Join(dir, r)
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				walk(p)
			}
			used[p] = true
		}
		for _, p := range list(k["patches"]) {
			used[filepath.Join(dir, str(get(p, "path")))] = true
		}
		for _, g := range list(k["configMapGenerator"]) {
			for _, f := range strs(get(g, "files")) {
				_, file, ok := strings.Cut(f, "=")
				if !ok {
					file = f
				}
				used[filepath.Join(dir, file)] = true
			}
		}
	}
	overlays, _ := filepath.Glob("k8s/overlays/*")
	if len(overlays) == 0 {
		t.Fatal("no overlays under deploy/k8s/overlays")
	}
	for _, o := range overlays {
		walk(o)
	}
	var all []string
	filepath.Walk("k8s", func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			all = append(all, p)
		}
		return nil
	})
	sort.Strings(all)
	for _, p := range all {
		if !used[p] {
			t.Errorf("%s is referenced by no kustomization.yaml", p)
		}
	}
}
