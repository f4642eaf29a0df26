//go:build soak

package main

// B8 and `make soak` (build tag soak, so neither `make test` nor `make
// bench` runs it): the whole pipeline as separate processes of the built
// binary (testenv.Binary) — tap, cdc, sync, shadow and compare — under a
// steady load for SOAK_DURATION (10m), each process's resident memory read
// from /proc/<pid>/status (VmRSS, VmHWM) and its goroutines from its own
// /metrics (go_goroutines) every SOAK_SAMPLE (10s).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heal7/shadowcube/internal/testenv"
)

// soakSetting reads a duration or float setting of the soak from the
// environment.
func soakSetting[T time.Duration | float64](b *testing.B, name string, def T) T {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out any
	var err error
	switch any(def).(type) {
	case time.Duration:
		out, err = time.ParseDuration(v)
	case float64:
		out, err = strconv.ParseFloat(v, 64)
	}
	if err != nil {
		b.Fatalf("%s=%q: %v", name, v, err)
	}
	return out.(T)
}

// soakProc is one running component.
type soakProc struct {
	name    string
	cmd     *exec.Cmd
	metrics string // http://host:port/metrics
	log     string
	rss     []float64 // MiB, one per sample
	gor     []float64
	peak    float64 // VmHWM, MiB
}

// status reads VmRSS and VmHWM (MiB) of the process.
func (p *soakProc) status() (rss, hwm float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s %q: %w", p.cmd.Process.Pid, k, v, err)
		}
		if k == "VmRSS" {
			rss = kb / 1024
		} else {
			hwm = kb / 1024
		}
	}
	return rss, hwm, sc.Err()
}

// goroutines scrapes go_goroutines from the process's /metrics.
func (p *soakProc) goroutines() (float64, error) {
	resp, err := http.Get(p.metrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s: no go_goroutines", p.metrics)
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func BenchmarkB8Soak(b *testing.B) {
	dur := soakSetting(b, "SOAK_DURATION", 10*time.Minute)
	every := soakSetting(b, "SOAK_SAMPLE", 10*time.Second)
	rate := soakSetting(b, "SOAK_RATE", 100.0)
	if dur < 3*every {
		b.Fatalf("SOAK_DURATION %v: at least three samples (SOAK_SAMPLE %v) are needed", dur, every)
	}
	ctx := testenv.Context(b, dur+15*time.Minute)
	pg := testenv.Postgres(b)
	srcURL, dstURL, storeURL := pg.NewDatabase(b), pg.NewDatabase(b), pg.NewDatabase(b)
	const table = `CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, score double precision NOT NULL)`
	for _, u := range []string{srcURL, dstURL} {
		c := testenv.Connect(b, u)
		if _, err := c.Exec(ctx, table); err != nil {
			b.Fatal(err)
		}
	}
	src, err := pgxpool.New(ctx, srcURL)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := pgxpool.New(ctx, dstURL)
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	n := testenv.StartNATS(b)

	// The legacy service writes and reads the source database; the cube
	// reads the cube database (kept in step by cdc + sync).
	item := func(db *pgxpool.Pool, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			var in struct {
				ID    int64
				Name  string
				Score float64
			}
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if _, err := db.Exec(r.Context(), `INSERT INTO items VALUES ($1, $2, $3)`, in.ID, in.Name, in.Score); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(in)
			return
		}
		id, _ := strconv.ParseInt(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:], 10, 64)
		var name string
		var score float64
		if err := db.QueryRow(r.Context(), `SELECT name, score FROM items WHERE id = $1`, id).Scan(&name, &score); err != nil {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"id": id, "name": name, "score": score})
	}
	legacy := serveSoak(b, func(w http.ResponseWriter, r *http.Request) { item(src, w, r) })
	cube := serveSoak(b, func(w http.ResponseWriter, r *http.Request) { item(dst, w, r) })

	dir := b.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	routesFile := write("routes.yaml", fmt.Sprintf(`
services:
  - name: items
    cube_url: %s
    sync_target: cube
    routes:
      - route: /api/items/{id}
        methods: [GET]
        compare: {kind: json}
      - route: /api/items
        methods: [POST]
`, cube))
	mappingFile := write("mapping.yaml", `
source: {slot: soak}
targets:
  - name: cube
    database_url_env: SOAK_CUBE_DATABASE_URL
    tables:
      - source: public.items
        key: [id]
`)
	tapPort := testenv.ClosedPort(b)
	common := []string{
		"SHADOWCUBE_NATS_URL=" + n.URL, "SHADOWCUBE_LOG_LEVEL=warn",
		"SHADOWCUBE_ROUTES_FILE=" + routesFile, "SHADOWCUBE_MAPPING_FILE=" + mappingFile,
		"SHADOWCUBE_SOURCE_DATABASE_URL=" + srcURL, "SOAK_CUBE_DATABASE_URL=" + dstURL,
		"SHADOWCUBE_STORE_DATABASE_URL=" + storeURL,
		"SHADOWCUBE_CDC_SLOT=soak", "SHADOWCUBE_CDC_PUBLICATION=soak",
		"SHADOWCUBE_TAP_SERVICE=items", "SHADOWCUBE_TAP_UPSTREAM=" + legacy,
		fmt.Sprintf("SHADOWCUBE_TAP_LISTEN=127.0.0.1:%d", tapPort),
		"SHADOWCUBE_USER_KEY_SECRET=" + strings.Repeat("5eed", 16),
	}
	bin := testenv.Binary(b)
	var procs []*soakProc
	for _, name := range []string{"cdc", "sync", "tap", "shadow", "compare"} {
		mport := testenv.ClosedPort(b)
		p := &soakProc{name: name, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), log: filepath.Join(dir, name+".log")}
		logf, err := os.Create(p.log)
		if err != nil {
			b.Fatal(err)
		}
		defer logf.Close()
		p.cmd = exec.Command(bin, name)
		p.cmd.Env = append(append(os.Environ(), common...), fmt.Sprintf("SHADOWCUBE_METRICS_ADDR=127.0.0.1:%d", mport))
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		if err := p.cmd.Start(); err != nil {
			b.Fatal(err)
		}
		procs = append(procs, p)
	}
	var exited sync.Map // name → error
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exited.Store(p.name, p.cmd.Wait())
		}()
	}
	stopAll := func() {
		for _, p := range procs { // each by its own pid
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			for _, p := range procs {
				_ = p.cmd.Process.Kill()
			}
			<-done
		}
	}
	defer stopAll()
	alive := func() {
		exited.Range(func(k, v any) bool {
			log, _ := os.ReadFile(filepath.Join(dir, k.(string)+".log"))
			b.Fatalf("%s exited during the soak: %v\n%s", k, v, log)
			return false
		})
	}
	// Ready when the tap answers and every process serves its metrics.
	tap := fmt.Sprintf("http://127.0.0.1:%d", tapPort)
	deadline := time.Now().Add(2 * time.Minute)
	for _, p := range procs {
		for {
			alive()
			if _, err := p.goroutines(); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s serves no metrics at %s after 2 minutes", p.name, p.metrics)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Steady load: half creates, half reads of an earlier item, through the tap.
	client := &http.Client{Timeout: 10 * time.Second}
	var sent, failed, created atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	load.Add(1)
	go func() {
		defer load.Done()
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		sem := make(chan struct{}, 64)
		for i := int64(1); ; i++ {
			select {
			case <-loadCtx.Done():
				for range cap(sem) {
					sem <- struct{}{}
				}
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				failed.Add(1) // the pipeline's tap cannot keep the rate
				continue
			}
			go func() {
				defer func() { <-sem }()
				var req *http.Request
				if i%2 == 1 || created.Load() == 0 {
					body := fmt.Sprintf(`{"ID":%d,"Name":"item %d","Score":%g}`, i, i, rand.Float64())
					req, _ = http.NewRequest(http.MethodPost, tap+"/api/items", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
				} else {
					req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/items/%d", tap, 1+2*rand.Int64N(created.Load())), nil)
				}
				req.Header.Set("X-User-Id", fmt.Sprintf("user-%d", i%50))
				resp, err := client.Do(req)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					failed.Add(1)
				} else if req.Method == http.MethodPost {
					created.Add(1)
				}
			}()
		}
	}()

	b.ResetTimer()
	start := time.Now()
	tick := time.NewTicker(every)
	for time.Since(start) < dur {
		<-tick.C
		alive()
		var line []string
		for _, p := range procs {
			rss, hwm, err := p.status()
			if err != nil {
				b.Fatal(err)
			}
			g, err := p.goroutines()
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			p.rss, p.gor, p.peak = append(p.rss, rss), append(p.gor, g), hwm
			line = append(line, fmt.Sprintf("%s %.1f MiB %d goroutines", p.name, rss, int(g)))
		}
		fmt.Printf("soak sample %s: %s\n", time.Since(start).Round(time.Second), strings.Join(line, ", "))
	}
	tick.Stop()
	stopLoad()
	load.Wait()
	b.StopTimer()
	alive()

	// The pipeline did its work: pairs compared and stored.
	var pairs int64
	store := testenv.Connect(b, storeURL)
	if err := store.QueryRow(ctx, `SELECT count(*) FROM shadowcube_compare.pairs`).Scan(&pairs); err != nil {
		b.Fatal(err)
	}
	if pairs == 0 || sent.Load() == 0 {
		b.Fatalf("soak: %d requests sent, %d pairs stored: the pipeline did not work", sent.Load(), pairs)
	}
	fmt.Printf("bench B8 soak load: %d requests in %s (%.1f req/s, asked %.0f), %d failed or not 2xx, %d pairs stored\n",
		sent.Load(), dur, float64(sent.Load())/dur.Seconds(), rate, failed.Load(), pairs)
	for _, p := range procs {
		k := len(p.rss) / 3
		second, last := mean(p.rss[k:2*k]), mean(p.rss[2*k:])
		gSecond, gLast := mean(p.gor[k:2*k]), mean(p.gor[2*k:])
		fmt.Printf("bench B8 %s peak RSS (VmHWM of the process): %.1f MiB | limit 150 MiB | ratio %.2f | target ≤ 1.0; flat: last third mean %.1f MiB against the second third's %.1f MiB (%+.1f%%, target within ±10%%), goroutines %.0f against %.0f (%+.1f%%)\n",
			p.name, p.peak, p.peak/150, last, second, 100*(last-second)/second, gLast, gSecond, 100*(gLast-gSecond)/gSecond)
	}
}

// serveSoak serves h on a loopback port until the benchmark ends.
func serveSoak(b *testing.B, h http.HandlerFunc) string {
	srv := &http.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
