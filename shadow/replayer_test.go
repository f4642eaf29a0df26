package shadow

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

const basicRoutes = `
services:
  - name: saju
    cube_url: CUBE
    secondary_url: SECONDARY
    routes:
      - route: /api/saju/chart
        methods: [GET, POST]
        replay: always
      - route: /api/saju/chart/{id}
        methods: [GET]
`

// A captured request is replayed to the cube and the secondary, the pair is
// stored in SHADOW_RESULTS under the request id, and the request is acked.
func TestReplayPublishesResultAndAcks(t *testing.T) {
	h := newHarness(t)
	cube, sec := newCube(t, "cube"), newCube(t, "secondary")
	r, _ := h.start(Config{Routes: h.routes(basicRoutes, "CUBE", cube.URL, "SECONDARY", sec.URL)})

	post := event("req-post", "saju", "/api/saju/chart", "POST", "/api/saju/chart")
	post.Query = "lang=ko"
	post.Body = []byte(`{"year":1990,"month":5,"day":17,"hour":23}`)
	post.Headers.Set("Content-Type", "application/json")
	get := event("req-get", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/42")
	h.publish(post, get)

	res := h.results(2)
	h.settled()

	p := res["req-post"]
	if p.V != schemas.Version || p.Service != "saju" || p.Route != "/api/saju/chart" || p.Request.ID != "req-post" {
		t.Errorf("result header fields: %+v", p)
	}
	if string(p.Legacy.Body) != `{"legacy":true}` || p.Legacy.Status != 200 {
		t.Errorf("legacy answer = %d %s, want the captured one", p.Legacy.Status, p.Legacy.Body)
	}
	if p.Cube == nil || p.Cube.Status != 200 || string(p.Cube.Body) != `{"from":"cube","path":"/api/saju/chart"}` || p.Cube.Latency <= 0 {
		t.Errorf("cube answer = %+v (error %q)", p.Cube, p.CubeError)
	}
	if p.Secondary == nil || string(p.Secondary.Body) != `{"from":"secondary","path":"/api/saju/chart"}` {
		t.Errorf("secondary answer = %+v (error %q)", p.Secondary, p.SecondaryError)
	}
	if p.ReplayedAt.IsZero() || p.Freshness.Stale || p.Freshness.Target != "" {
		t.Errorf("replayed_at %v freshness %+v", p.ReplayedAt, p.Freshness)
	}
	if g := res["req-get"]; g.Route != "/api/saju/chart/{id}" || g.Cube == nil || !strings.Contains(string(g.Cube.Body), "/api/saju/chart/42") {
		t.Errorf("GET result: %+v", g)
	}
	if got := h.resultCount(); got != 2 {
		t.Errorf("%d results stored, want 2", got)
	}
	for _, c := range []*cubeServer{cube, sec} {
		reqs := c.requests()
		if len(reqs) != 2 {
			t.Fatalf("%s saw %d requests, want 2", c.name, len(reqs))
		}
		for _, s := range reqs {
			if s.Method == "POST" && (s.Path != "/api/saju/chart" || s.Query != "lang=ko" || s.Body != string(post.Body) || s.Header.Get("Content-Type") != "application/json") {
				t.Errorf("%s got POST %+v, want the captured request", c.name, s)
			}
		}
	}
	if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", "/api/saju/chart", outcomeReplayed)); got != 1 {
		t.Errorf("replays_total{replayed} = %v, want 1", got)
	}
}

// The request stays unacknowledged while its result cannot be stored, and is
// acked once SHADOW_RESULTS accepts it.
func TestAckOnlyAfterResultStored(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	r, _ := h.start(Config{Routes: h.routes(basicRoutes, "CUBE", cube.URL, "secondary_url: SECONDARY", "")})
	if err := h.js.DeleteStream(h.ctx, schemas.StreamShadowResults); err != nil {
		t.Fatal(err)
	}
	h.publish(event("req-1", "saju", "/api/saju/chart", "GET", "/api/saju/chart"))

	eventually(t, 20*time.Second, func() error {
		if got := testutil.ToFloat64(r.m.publishFailures); got < 2 {
			return fmt.Errorf("%v publish failures so far", got)
		}
		return nil
	})
	if info := h.consumer(DurableName(DefaultDurable, "saju")); info.NumAckPending != 1 || info.AckFloor.Consumer != 0 {
		t.Fatalf("request acked while its result is not stored: ack pending %d, ack floor %d", info.NumAckPending, info.AckFloor.Consumer)
	}
	if n := len(cube.requests()); n < 2 {
		t.Fatalf("cube saw %d replays, want the nak'ed request replayed again", n)
	}

	cfg, _ := natsx.StreamConfig(schemas.StreamShadowResults, natsx.StreamSettings{})
	if _, err := natsx.EnsureStream(h.ctx, h.js, cfg); err != nil {
		t.Fatal(err)
	}
	res := h.results(1)
	h.settled()
	if res["req-1"].Cube == nil {
		t.Fatalf("result after recovery: %+v", res["req-1"])
	}
}

const policyRoutes = `
services:
  - name: web
    cube_url: CUBE
    routes:
      - route: /always
        replay: always
      - route: /reads
      - route: /idem
        replay: idempotent-only
      - route: /dry
        replay: dry-run
      - route: /never
        replay: never
      - route: /getonly
        methods: [GET]
      - route: /sampled
        sample: 0
      - route: /half
        sample: 0.5
      - route: /graphql
        classify: {graphql: true}
        operation: graphql
      - route: /graphql-dry
        replay: dry-run
        classify: {graphql: true}
        operation: graphql
      - route: /rpc
        classify: {read_when: {path: $.method, match: '^get'}}
        operation: $.method
`

// Which requests are replayed: the default policy replays reads only
// (never a write, whatever Idempotency-Key a client sends); a request legacy
// refused with 401/403 is never replayed; routes classify by content
// (GraphQL operation type, a JSONPath condition). Every request skipped by
// policy is counted and stored as a result with Skipped set (Nats-Msg-Id =
// request id); only sampled-out imports store nothing.
func TestReplayPolicies(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	r, _ := h.start(Config{Routes: h.routes(policyRoutes, "CUBE", cube.URL)})

	type tc struct {
		id, route, method string
		body              string
		mod               func(*schemas.RequestEvent)
		skip              string // "" = replayed
		dry               bool
		op                string
	}
	legacy := func(status int) func(*schemas.RequestEvent) {
		return func(ev *schemas.RequestEvent) { ev.Response.Status = status }
	}
	cases := []tc{
		{id: "a-post", route: "/always", method: "POST"},
		{id: "a-401", route: "/always", method: "GET", mod: legacy(401), skip: SkipLegacyUnauthorized},
		{id: "r-get", route: "/reads", method: "GET"},
		{id: "r-head", route: "/reads", method: "HEAD"},
		{id: "r-options", route: "/reads", method: "OPTIONS"},
		{id: "r-post", route: "/reads", method: "POST", body: `{"x":1}`, skip: SkipWrite},
		{id: "r-delete", route: "/reads", method: "DELETE", skip: SkipWrite},
		{id: "r-403", route: "/reads", method: "GET", mod: legacy(403), skip: SkipLegacyUnauthorized},
		{id: "r-trunc", route: "/reads", method: "GET", mod: func(ev *schemas.RequestEvent) { ev.BodyTruncated = true }, skip: SkipTruncated},
		{id: "i-get", route: "/idem", method: "GET"},
		{id: "i-post", route: "/idem", method: "POST", skip: SkipWrite},
		{id: "i-post-keyed", route: "/idem", method: "POST", mod: func(ev *schemas.RequestEvent) { ev.Headers.Set("Idempotency-Key", "k-1") }, skip: SkipWrite},
		{id: "d-post", route: "/dry", method: "POST", dry: true},
		{id: "d-403", route: "/dry", method: "POST", mod: legacy(403), skip: SkipLegacyUnauthorized},
		{id: "n-get", route: "/never", method: "GET", skip: SkipNever},
		{id: "g-post", route: "/getonly", method: "POST", skip: SkipMethod},
		{id: "s-tap", route: "/sampled", method: "GET"}, // the tap sampled at capture already
		{id: "s-import", route: "/sampled", method: "GET", mod: func(ev *schemas.RequestEvent) { ev.Source = schemas.SourceImport }, skip: SkipSampled},
		{id: "gql-query", route: "/graphql", method: "POST", body: `{"query":"query GetUser($id: ID!) { user(id: $id) { name } }","variables":{"id":"1"}}`, op: "GetUser"},
		{id: "gql-named", route: "/graphql", method: "POST", body: `{"query":"mutation Del { deleteUser(id: 1) } query Get { user(id: 1) { name } }","operationName":"Get"}`, op: "Get"},
		{id: "gql-mutation", route: "/graphql", method: "POST", body: `{"query":"mutation DeleteUser { deleteUser(id: 1) }"}`, skip: SkipWrite, op: "DeleteUser"},
		{id: "gql-subscription", route: "/graphql", method: "POST", body: `{"query":"subscription S { events { id } }"}`, skip: SkipWrite, op: "S"},
		{id: "gql-garbage", route: "/graphql", method: "POST", body: `{"query":"query {"}`, skip: SkipWrite},
		{id: "gql-dry-mutation", route: "/graphql-dry", method: "POST", body: `{"query":"mutation DeleteUser { deleteUser(id: 1) }"}`, dry: true, op: "DeleteUser"},
		{id: "rpc-get", route: "/rpc", method: "POST", body: `{"method":"getUser","id":1}`, op: "getUser"},
		{id: "rpc-set", route: "/rpc", method: "POST", body: `{"method":"setUser","id":1}`, skip: SkipWrite, op: "setUser"},
	}
	var evs []schemas.RequestEvent
	for _, c := range cases {
		ev := event(c.id, "web", c.route, c.method, c.route)
		ev.Body = []byte(c.body)
		ev.Query = "case=" + c.id
		if c.mod != nil {
			c.mod(&ev)
		}
		evs = append(evs, ev)
	}
	half := 0
	for i := range 200 {
		id := fmt.Sprintf("half-%d", i)
		if sampled(id, 0.5) {
			half++
		}
		ev := event(id, "web", "/half", "GET", "/half")
		ev.Source = schemas.SourceImport
		evs = append(evs, ev)
	}
	h.publish(evs...)

	want, replayed := half, half
	skips := map[string]float64{}
	for _, c := range cases {
		if c.skip != SkipSampled {
			want++
		}
		if c.skip == "" {
			replayed++
		} else {
			skips[c.route+" "+c.skip]++
		}
	}
	res := h.results(want)
	h.settled()
	if len(res) != want {
		t.Fatalf("%d results, want %d", len(res), want)
	}
	if half < 70 || half > 130 {
		t.Errorf("sample 0.5 kept %d of 200", half)
	}
	byCase := map[string]seen{}
	for _, s := range cube.requests() {
		byCase[s.Query] = s
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			rs, stored := res[c.id]
			if stored != (c.skip != SkipSampled) {
				t.Fatalf("result stored = %v", stored)
			}
			if !stored {
				return
			}
			if rs.Skipped != c.skip || rs.Operation != c.op {
				t.Errorf("skipped %q operation %q, want %q %q", rs.Skipped, rs.Operation, c.skip, c.op)
			}
			s, sent := byCase["case="+c.id]
			if sent && (s.Method != c.method || s.Path != c.route || s.Body != c.body) {
				t.Errorf("cube got %s %s %q, want the captured request", s.Method, s.Path, s.Body)
			}
			if c.skip != "" {
				if sent || rs.Cube != nil || rs.CubeError != "" || rs.Legacy.Status == 0 {
					t.Errorf("skipped request: sent %v, cube %v %q, legacy %d", sent, rs.Cube, rs.CubeError, rs.Legacy.Status)
				}
				return
			}
			if !sent || rs.Cube == nil {
				t.Fatalf("cube never saw it (result cube %v %q)", rs.Cube, rs.CubeError)
			}
			if got := s.Header.Get(ShadowRequestHeader); (got == "1") != c.dry {
				t.Errorf("%s = %q, dry-run %v", ShadowRequestHeader, got, c.dry)
			}
		})
	}
	skips["/half "+SkipSampled] = float64(200 - half)
	for key, n := range skips {
		route, reason, _ := strings.Cut(key, " ")
		if got := testutil.ToFloat64(r.m.skipped.WithLabelValues("web", route, reason)); got != n {
			t.Errorf("skipped_total{%s,%s} = %v, want %v", route, reason, got, n)
		}
	}
	if n := len(cube.requests()); n != replayed {
		t.Errorf("cube saw %d requests, want %d (skipped ones must never reach it)", n, replayed)
	}
}

const credRoutes = `
services:
  - name: bearer-svc
    cube_url: URL_A
    secondary_url: URL_S
    headers: {X-Tenant: shadow, X-Debug: ""}
    credentials: {kind: bearer, token_env: CUBE_A_TOKEN}
    routes:
      - route: /api/a
  - name: jwt-svc
    cube_url: URL_B/base/
    credentials: {kind: jwt-hs256, secret_env: CUBE_B_SECRET, issuer: shadowcube, audience: cube-b, subject: shadow, ttl: 2m}
    routes:
      - route: /api/b
`

func TestCredentialsAndHeaderRewriting(t *testing.T) {
	h := newHarness(t)
	a, b, sec := newCube(t, "a"), newCube(t, "b"), newCube(t, "secondary")
	env := map[string]string{"CUBE_A_TOKEN": "svc-token-a", "CUBE_B_SECRET": "secret-b"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	rf := h.routes(credRoutes, "URL_A", a.URL, "URL_B", b.URL, "URL_S", sec.URL)
	start := time.Now()
	h.start(Config{Routes: rf, LookupEnv: lookup})

	leak := func(ev schemas.RequestEvent) schemas.RequestEvent {
		// A capture must never hold these; pretend one did.
		ev.Headers.Set("Authorization", "Bearer USER-TOKEN")
		ev.Headers.Set("Cookie", "session=USER")
		ev.Headers.Set("X-Api-Key", "USER-KEY")
		ev.Headers.Set("X-Debug", "1")
		ev.Headers.Set("X-Tenant", "user-tenant")
		ev.Headers.Set("X-Request-Id", "abc")
		return ev
	}
	h.publish(leak(event("a1", "bearer-svc", "/api/a", "GET", "/api/a")), leak(event("b1", "jwt-svc", "/api/b", "GET", "/api/b")))
	h.results(2)

	ra := a.requests()
	if len(ra) != 1 {
		t.Fatalf("cube a saw %d requests", len(ra))
	}
	ha := ra[0].Header
	if got := ha.Get("Authorization"); got != "Bearer svc-token-a" {
		t.Errorf("cube a Authorization = %q, want the service token", got)
	}
	if ha.Get("X-Tenant") != "shadow" || ha.Get("X-Debug") != "" || ha.Get("X-Request-Id") != "abc" {
		t.Errorf("header rewriting: X-Tenant %q X-Debug %q X-Request-Id %q", ha.Get("X-Tenant"), ha.Get("X-Debug"), ha.Get("X-Request-Id"))
	}
	rb := b.requests()
	if len(rb) != 1 {
		t.Fatalf("cube b saw %d requests", len(rb))
	}
	if rb[0].Path != "/base/api/b" {
		t.Errorf("cube b path = %q, want the cube_url prefix kept", rb[0].Path)
	}
	hb := rb[0].Header
	if hb.Get("X-Tenant") != "user-tenant" {
		t.Errorf("cube b X-Tenant = %q: rewriting must be per target", hb.Get("X-Tenant"))
	}
	for _, hd := range []http.Header{ha, hb} {
		for _, k := range []string{"Cookie", "X-Api-Key"} {
			if v := hd.Get(k); v != "" {
				t.Errorf("user credential %s=%q forwarded", k, v)
			}
		}
		if strings.Contains(hd.Get("Authorization"), "USER") {
			t.Errorf("user Authorization forwarded: %q", hd.Get("Authorization"))
		}
	}
	rs := sec.requests()
	if len(rs) != 1 {
		t.Fatalf("secondary saw %d requests", len(rs))
	}
	if hs := rs[0].Header; hs.Get("Authorization") != "" || hs.Get("Cookie") != "" || hs.Get("X-Tenant") != "user-tenant" {
		t.Errorf("secondary (a legacy instance) got Authorization %q Cookie %q X-Tenant %q: cube credentials and rewrites are for the cube only",
			hs.Get("Authorization"), hs.Get("Cookie"), hs.Get("X-Tenant"))
	}
	tok, ok := strings.CutPrefix(hb.Get("Authorization"), "Bearer ")
	if !ok {
		t.Fatalf("cube b Authorization = %q, want a bearer JWT", hb.Get("Authorization"))
	}
	claims := verifyHS256(t, tok, []byte("secret-b"))
	if claims.Iss != "shadowcube" || claims.Aud != "cube-b" || claims.Sub != "shadow" {
		t.Errorf("claims = %+v", claims)
	}
	exp := time.Unix(claims.Exp, 0)
	if exp.Before(start.Add(2*time.Minute-2*time.Second)) || exp.After(time.Now().Add(2*time.Minute+time.Second)) {
		t.Errorf("exp %v, want about now+2m", exp)
	}
}

// A credentials env var that is not set is a start-up error naming it.
func TestCredentialsMissingEnv(t *testing.T) {
	h := newHarness(t)
	_, err := New(Config{Routes: h.routes(credRoutes, "URL_A", "http://a", "URL_B", "http://b", "URL_S", "http://s")}, Deps{JetStream: h.js})
	if err == nil || !strings.Contains(err.Error(), "CUBE_A_TOKEN") || !strings.Contains(err.Error(), "CUBE_B_SECRET") {
		t.Fatalf("err = %v, want both missing variables named", err)
	}
}

// verifyHS256 checks a compact HS256 JWT the way a cube would.
func verifyHS256(t *testing.T, tok string, secret []byte) jwtClaims {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT %q has %d parts", tok, len(parts))
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || string(hdr) != `{"alg":"HS256","typ":"JWT"}` {
		t.Fatalf("JWT header %s (%v)", hdr, err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		t.Fatalf("JWT signature does not verify with the target's secret")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c jwtClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

const freshRoutes = `
services:
  - name: saju
    cube_url: CUBE
    sync_target: saju-cube
    freshness_wait: WAIT
    routes:
      - route: /api/saju/chart/{id}
`

// putWatermark writes a watermark as the sync stage would. It may run on
// any goroutine (it reports with t.Error).
func putWatermark(t *testing.T, h *harness, target string, commit time.Time) {
	kv, err := h.js.KeyValue(h.ctx, schemas.KVBucket)
	if err != nil {
		t.Error(err)
		return
	}
	data, err := schemas.Watermark{Target: target, Slot: "shadowcube", CommitTime: commit, AppliedAt: time.Now()}.Encode()
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := kv.Put(h.ctx, schemas.WatermarkKey(target), data); err != nil {
		t.Error(err)
	}
}

// The replay waits while the cube's watermark is behind the capture time,
// proceeds as soon as it passes, and is tagged stale when the wait expires.
func TestFreshnessBarrier(t *testing.T) {
	t.Run("waits-then-proceeds", func(t *testing.T) {
		h := newHarness(t)
		cube := newCube(t, "cube")
		r, _ := h.start(Config{Routes: h.routes(freshRoutes, "CUBE", cube.URL, "WAIT", "20s")})
		ev := event("fresh-1", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/7")
		putWatermark(t, h, "saju-cube", ev.CapturedAt.Add(-time.Second)) // behind T
		h.publish(ev)

		// Progress first: the request is held at the barrier, and the
		// replayer has seen the behind watermark.
		key := schemas.WatermarkKey("saju-cube")
		eventually(t, 30*time.Second, func() error {
			if got := testutil.ToFloat64(r.m.freshnessWaiting.WithLabelValues("saju")); got != 1 {
				return fmt.Errorf("%v requests waiting at the barrier", got)
			}
			if mark, _ := r.marks.get(key); !mark.Equal(ev.CapturedAt.Add(-time.Second)) {
				return fmt.Errorf("replayer saw watermark %v", mark)
			}
			return nil
		})
		heldSince := time.Now()
		rewaits := r.marks.rewaits.Load()
		putWatermark(t, h, "other-cube", ev.CapturedAt.Add(time.Hour)) // another target's progress does not count
		// The waiter saw that change and kept waiting.
		eventually(t, 30*time.Second, func() error {
			if r.marks.rewaits.Load() == rewaits {
				return fmt.Errorf("waiter has not seen the other target's watermark")
			}
			return nil
		})
		if n := len(cube.requests()); n != 0 {
			t.Fatalf("cube saw %d requests while its watermark is behind the capture time", n)
		}
		if h.resultCount() != 0 {
			t.Fatal("result published before the watermark passed")
		}
		if got := testutil.ToFloat64(r.m.freshnessWaiting.WithLabelValues("saju")); got != 1 {
			t.Fatalf("another target's watermark released the replay (%v waiting)", got)
		}
		released := time.Now()
		putWatermark(t, h, "saju-cube", ev.CapturedAt.Add(time.Millisecond))
		res := h.results(1)["fresh-1"]
		f := res.Freshness
		// The wait began before heldSince and ended after released.
		if f.Stale || f.Target != "saju-cube" || f.Waited < released.Sub(heldSince) || !f.Watermark.Equal(ev.CapturedAt.Add(time.Millisecond)) {
			t.Errorf("freshness = %+v, want not stale, waited ≥ %v", f, released.Sub(heldSince))
		}
		if res.Cube == nil {
			t.Errorf("no cube answer: %q", res.CubeError)
		}
		if got := testutil.ToFloat64(r.m.stale.WithLabelValues("saju", "/api/saju/chart/{id}")); got != 0 {
			t.Errorf("stale count = %v", got)
		}
		// Already fresh: no wait at all.
		ev2 := event("fresh-2", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/8")
		ev2.CapturedAt = ev.CapturedAt
		h.publish(ev2)
		// Its watermark already passed: it is released at once, never stale
		// (the wait is 20s: a request held by mistake would be).
		if f := h.results(2)["fresh-2"].Freshness; f.Stale || f.Waited >= 20*time.Second || f.Watermark.Before(ev2.CapturedAt) {
			t.Errorf("fresh request freshness = %+v", f)
		}
	})
	t.Run("expires-stale", func(t *testing.T) {
		h := newHarness(t)
		cube := newCube(t, "cube")
		r, _ := h.start(Config{Routes: h.routes(freshRoutes, "CUBE", cube.URL, "WAIT", "400ms")})
		var evs []schemas.RequestEvent
		for i := range 20 { // many waiters share the one watcher
			evs = append(evs, event(fmt.Sprintf("stale-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
		}
		h.publish(evs...)
		res := h.results(20)
		for id, r := range res {
			if f := r.Freshness; !f.Stale || f.Waited < 350*time.Millisecond || r.Cube == nil {
				t.Errorf("%s: freshness %+v cube %v", id, f, r.Cube)
			}
		}
		if got := testutil.ToFloat64(r.m.stale.WithLabelValues("saju", "/api/saju/chart/{id}")); got != 20 {
			t.Errorf("stale count = %v, want 20", got)
		}
	})
}

const breakerRoutes = `
services:
  - name: saju
    cube_url: CUBE
    concurrency: 2
    timeout: 5s
    routes:
      - route: /api/saju/chart/{id}
`

// A cube that is down opens the breaker after a few failures, so few
// requests reach it; no request is stored as a cube error: every one waits
// in JetStream while the breaker is open and gets a real answer once the
// cube is back and a half-open probe closed the breaker.
func TestCircuitBreakerCubeDown(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	cube.setHandler(func(w http.ResponseWriter, r *http.Request) { // down: drop the connection
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("no hijacker")
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
	})
	const openFor = 300 * time.Millisecond
	const n = 60
	var evs []schemas.RequestEvent
	for i := range n {
		evs = append(evs, event(fmt.Sprintf("down-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
	}
	h.publish(evs...) // a backlog: every handler starts at once
	const ackWait = 1500 * time.Millisecond
	r, _ := h.start(Config{Routes: h.routes(breakerRoutes, "CUBE", cube.URL), Breaker: BreakerConfig{Failures: 3, OpenFor: openFor}, AckWait: ackWait})
	route := "/api/saju/chart/{id}"

	// Progress first: the breaker opened, and half-open probes failed and
	// opened it again for longer than AckWait (8 × 300ms), so a request
	// held in the client's buffer instead of JetStream would be redelivered
	// and replayed twice.
	eventually(t, 60*time.Second, func() error {
		if got := testutil.ToFloat64(r.m.breakerChanges.WithLabelValues("saju", "open")); got < 8 {
			return fmt.Errorf("breaker opened %v times", got)
		}
		return nil
	})
	if got := h.resultCount(); got != 0 {
		t.Fatalf("%d results stored while the cube was down; want every request waiting", got)
	}
	if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, outcomeDeferred)); got < 3 {
		t.Errorf("deferred count %v, want the failed requests handed back", got)
	}
	// Requests reaching the down cube: those failing until it opens, those
	// already in flight (concurrency 2), and one per half-open probe.
	probes := testutil.ToFloat64(r.m.breakerChanges.WithLabelValues("saju", "half-open"))
	if saw, limit := len(cube.requests()), 3+2+int(probes); saw > limit {
		t.Errorf("cube saw %d requests while down with %v probes, want ≤ %d (the breaker must stop the hammering)", saw, probes, limit)
	}
	if st, _ := r.BreakerState("saju"); st == BreakerClosed {
		t.Errorf("breaker closed while the cube is down")
	}

	var mu sync.Mutex
	answered := map[string]int{}
	cube.setHandler(func(w http.ResponseWriter, r *http.Request) { // the cube is back
		mu.Lock()
		answered[r.URL.Path]++
		mu.Unlock()
		fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	})
	res := h.results(n)
	h.settled()
	mu.Lock()
	for p, c := range answered {
		if c != 1 {
			t.Errorf("%s answered %d times after recovery, want once", p, c)
		}
	}
	if len(answered) != n {
		t.Errorf("%d paths answered after recovery, want %d", len(answered), n)
	}
	mu.Unlock()
	for _, rs := range res {
		if rs.Cube == nil || rs.Cube.Status != 200 || rs.CubeError != "" {
			t.Errorf("%s: cube %v error %q, want a real answer", rs.RequestID, rs.Cube, rs.CubeError)
		}
	}
	for _, o := range []string{outcomeCubeError, outcomeTimeout, outcomeCircuitOpen} {
		if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, o)); got != 0 {
			t.Errorf("replays_total{%s} = %v, want 0", o, got)
		}
	}
	if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, outcomeReplayed)); got != n {
		t.Errorf("replayed %v, want %d", got, n)
	}
	if st, _ := r.BreakerState("saju"); st != BreakerClosed {
		t.Errorf("breaker %v after recovery, want closed", st)
	}
	if got := testutil.ToFloat64(r.m.breakerState.WithLabelValues("saju")); got != float64(BreakerClosed) {
		t.Errorf("breaker gauge %v, want %d", got, BreakerClosed)
	}
}

// Shadow started before the cube listens (issue 17 item 9): requests wait
// in JetStream (connection refused is no answer), and once the cube listens
// every request gets a real comparison pair, none a cube error.
func TestCubeNotUpYet(t *testing.T) {
	h := newHarness(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there until the cube starts
	r, _ := h.start(Config{Routes: h.routes(breakerRoutes, "CUBE", "http://"+addr), Breaker: BreakerConfig{Failures: 3, OpenFor: 200 * time.Millisecond}})
	const n = 30
	var evs []schemas.RequestEvent
	for i := range n {
		evs = append(evs, event(fmt.Sprintf("early-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
	}
	h.publish(evs...)
	route := "/api/saju/chart/{id}"
	eventually(t, 30*time.Second, func() error { // refused, refused again: the breaker opened
		if got := testutil.ToFloat64(r.m.breakerChanges.WithLabelValues("saju", "open")); got < 1 {
			return fmt.Errorf("breaker opened %v times", got)
		}
		if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, outcomeDeferred)); got < 3 {
			return fmt.Errorf("%v requests deferred", got)
		}
		return nil
	})
	if got := h.resultCount(); got != 0 {
		t.Fatalf("%d results stored before the cube listened", got)
	}

	cube := newCubeAt(t, "cube", addr)
	res := h.results(n)
	h.settled()
	for i := range n {
		rs, ok := res[fmt.Sprintf("early-%d", i)]
		if !ok || rs.Cube == nil || rs.Cube.Status != 200 || rs.CubeError != "" {
			t.Errorf("early-%d: cube %v error %q, want a real answer", i, rs.Cube, rs.CubeError)
		}
	}
	if len(res) != n {
		t.Errorf("%d results, want %d", len(res), n)
	}
	if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, outcomeCubeError)); got != 0 {
		t.Errorf("cube-error count %v, want 0", got)
	}
	if saw := len(cube.requests()); saw < n {
		t.Errorf("cube saw %d requests, want every one of %d", saw, n)
	}
}

// A cube that proved healthy and then stops listening: "connection
// refused" is recorded, but only on the request's CubeErrorAttempts-th
// delivery (earlier ones are handed back), and only while the breaker stays
// closed.
func TestCubeConnectionRefused(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	r, _ := h.start(Config{Routes: h.routes(breakerRoutes, "CUBE", cube.URL), NakDelay: 50 * time.Millisecond})
	h.publish(event("ok", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/1"))
	h.results(1)
	cube.Close()
	h.publish(event("refused", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/2"))
	rs := h.results(2)["refused"]
	if !strings.Contains(rs.CubeError, "connection refused") || rs.Cube != nil {
		t.Errorf("cube %v error %q, want connection refused", rs.Cube, rs.CubeError)
	}
	route := "/api/saju/chart/{id}"
	if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, outcomeDeferred)); got != 2 {
		t.Errorf("deferred %v times, want 2 (recorded on the 3rd delivery)", got)
	}
	if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, outcomeCubeError)); got != 1 {
		t.Errorf("cube-error count %v, want 1", got)
	}
}

// A slow cube: the replay is cut at the per-request timeout and recorded as
// a timeout within a healthy period; before the cube answered once, a
// timeout is no answer and the request is replayed again.
func TestCubeTimeout(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var mu sync.Mutex
	first := true
	cube.setHandler(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hang := first || r.URL.Path == "/api/saju/chart/slow"
		first = false
		mu.Unlock()
		if hang {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, `{"ok":true}`)
	})
	r, _ := h.start(Config{Routes: h.routes(breakerRoutes, "CUBE", cube.URL, "timeout: 5s", "timeout: 300ms")})
	// The first call hangs before the cube ever answered: not recorded.
	h.publish(event("early", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/1"))
	if rs := h.results(1)["early"]; rs.Cube == nil || string(rs.Cube.Body) != `{"ok":true}` {
		t.Errorf("early: cube %v error %q, want the answer of the second try", rs.Cube, rs.CubeError)
	}
	route := "/api/saju/chart/{id}"
	if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, outcomeDeferred)); got != 1 {
		t.Errorf("deferred %v, want 1", got)
	}
	h.publish(event("slow", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/slow"))
	if e := h.results(2)["slow"].CubeError; e != ErrTextTimeout {
		t.Errorf("cube error %q, want %q", e, ErrTextTimeout)
	}
	if got := testutil.ToFloat64(r.m.replays.WithLabelValues("saju", route, outcomeTimeout)); got != 1 {
		t.Errorf("timeout count %v, want 1", got)
	}
}

// Two replayers sharing a durable split the work; no request is replayed twice.
func TestTwoReplayersShareDurable(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	rf := h.routes(breakerRoutes, "CUBE", cube.URL, "concurrency: 2", "concurrency: 8")
	r1, _ := h.start(Config{Routes: rf, MaxInFlight: 16})
	r2, _ := h.start(Config{Routes: rf, MaxInFlight: 16})
	n := 400
	if testing.Short() {
		n = 100
	}
	var evs []schemas.RequestEvent
	for i := range n {
		evs = append(evs, event(fmt.Sprintf("w-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
	}
	h.publish(evs...)
	h.results(n)
	h.settled()
	count := map[string]int{}
	for _, s := range cube.requests() {
		count[s.Path]++
	}
	for i := range n {
		if c := count[fmt.Sprintf("/api/saju/chart/%d", i)]; c != 1 {
			t.Errorf("request %d replayed %d times", i, c)
		}
	}
	route := "/api/saju/chart/{id}"
	a := testutil.ToFloat64(r1.m.replays.WithLabelValues("saju", route, outcomeReplayed))
	b := testutil.ToFloat64(r2.m.replays.WithLabelValues("saju", route, outcomeReplayed))
	if a+b != float64(n) || a == 0 || b == 0 {
		t.Errorf("replayer 1 did %v, replayer 2 did %v of %d: want the work split", a, b, n)
	}
}

// Undecodable messages go to dlq.shadow with the reason and are not
// redelivered; the next message is replayed normally.
func TestUndecodableToDLQ(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	h.start(Config{Routes: h.routes(breakerRoutes, "CUBE", cube.URL)})
	poison := []struct{ data, reason string }{
		{`{"v":"1.0","id":""}`, `"service": required`},          // several missing fields, one line
		{`not json`, "invalid JSON"},                            // garbage
		{`{"v":"2.0","id":"x"}`, "unknown event major version"}, // written by a newer shadowcube
	}
	for _, p := range poison {
		if _, err := h.js.Publish(h.ctx, schemas.RequestSubject("saju", "/api/saju/chart/{id}"), []byte(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	h.publish(event("good", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/1"))
	h.results(1)
	h.settled()
	s, err := h.js.Stream(h.ctx, schemas.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[uint64]schemas.DeadLetter{} // handlers run concurrently: any order
	for i := range poison {
		msg, err := s.GetMsg(h.ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("dead letter %d: %v", i+1, err)
		}
		d, err := schemas.DecodeDeadLetter(msg.Data)
		if err != nil || msg.Subject != schemas.DLQSubject("shadow") {
			t.Fatalf("dead letter %d on %s is not the envelope: %v", i+1, msg.Subject, err)
		}
		bySeq[d.StreamSeq] = d
	}
	for i, p := range poison {
		d, ok := bySeq[uint64(i+1)]
		if !ok {
			t.Errorf("no dead letter for request seq %d (%s)", i+1, p.data)
			continue
		}
		if d.Stage != "shadow" || !strings.Contains(d.Error, p.reason) || strings.Contains(d.Error, "\n") ||
			string(d.Payload) != p.data || d.Subject != schemas.RequestSubject("saju", "/api/saju/chart/{id}") || d.Stream != schemas.StreamLegacyRequests {
			t.Errorf("dead letter %d: %+v", i+1, d)
		}
	}
	if info, _ := s.Info(h.ctx); info.State.Msgs != uint64(len(poison)) {
		t.Errorf("%d dead letters, want %d", info.State.Msgs, len(poison))
	}
	if info := h.consumer(DurableName(DefaultDurable, "saju")); info.NumRedelivered != 0 {
		t.Errorf("%d redelivered", info.NumRedelivered)
	}
}

// A secondary that is down only fills SecondaryError; the cube pair is intact.
func TestSecondaryDown(t *testing.T) {
	h := newHarness(t)
	cube, sec := newCube(t, "cube"), newCube(t, "secondary")
	secURL := sec.URL
	sec.Close()
	h.start(Config{Routes: h.routes(basicRoutes, "CUBE", cube.URL, "SECONDARY", secURL)})
	h.publish(event("s1", "saju", "/api/saju/chart", "GET", "/api/saju/chart"))
	res := h.results(1)["s1"]
	if res.Cube == nil || res.CubeError != "" || res.Secondary != nil || !strings.Contains(res.SecondaryError, "connection refused") {
		t.Errorf("cube %v %q, secondary %v %q", res.Cube, res.CubeError, res.Secondary, res.SecondaryError)
	}
}

// rate_per_second bounds how fast the cube is called.
func TestRateLimitPerTarget(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	var mu sync.Mutex
	var times []time.Time
	cube.setHandler(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
	})
	rf := h.routes(breakerRoutes, "CUBE", cube.URL, "concurrency: 2", "concurrency: 8\n    rate_per_second: 20")
	h.start(Config{Routes: rf})
	var evs []schemas.RequestEvent
	for i := range 30 {
		evs = append(evs, event(fmt.Sprintf("rl-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
	}
	h.publish(evs...)
	h.results(30)
	mu.Lock()
	defer mu.Unlock()
	// 30 requests at 20/s with a burst of 2: at least 28/20 s between first and last.
	if span := times[len(times)-1].Sub(times[0]); span < 1300*time.Millisecond {
		t.Errorf("30 requests reached the cube within %v at rate 20/s", span)
	}
}

// A replayer stopped mid-replay naks the request; another replayer on the
// same durable then replays it, and exactly one result is stored.
func TestCloseMidReplayHandsOver(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	slow := make(chan struct{})
	cube.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-slow:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, `{"ok":true}`)
	})
	rf := h.routes(breakerRoutes, "CUBE", cube.URL, "timeout: 5s", "timeout: 20s")
	r1, _ := h.start(Config{Routes: rf})
	h.publish(event("handover", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/1"))
	eventually(t, 10*time.Second, func() error {
		if len(cube.requests()) == 0 {
			return fmt.Errorf("cube not reached yet")
		}
		return nil
	})
	r1.Close()
	if n := h.resultCount(); n != 0 {
		t.Fatalf("%d results stored by a replayer stopped mid-replay", n)
	}
	close(slow)
	h.start(Config{Routes: rf})
	res := h.results(1)["handover"]
	h.settled()
	if res.Cube == nil || string(res.Cube.Body) != `{"ok":true}` {
		t.Fatalf("handed-over result: %+v", res)
	}
	if n := h.resultCount(); n != 1 {
		t.Errorf("%d results, want 1", n)
	}
}

// The replayer survives a NATS restart: requests published before and after
// are all replayed once their results can be stored.
func TestSurvivesNATSRestart(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	h.start(Config{Routes: h.routes(breakerRoutes, "CUBE", cube.URL)})
	h.publish(event("before", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/1"))
	h.results(1)
	h.nats.Restart(t)
	var evs []schemas.RequestEvent
	for i := range 20 {
		evs = append(evs, event(fmt.Sprintf("after-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
	}
	eventually(t, 20*time.Second, func() error { // the test client reconnects too
		_, err := h.js.AccountInfo(h.ctx)
		return err
	})
	h.publish(evs...)
	res := h.results(21)
	h.settled()
	for i := range 20 {
		if r, ok := res[fmt.Sprintf("after-%d", i)]; !ok || r.Cube == nil {
			t.Errorf("after-%d: %+v", i, r)
		}
	}
}

// Messages queued behind a slow target for longer than AckWait are kept in
// progress, not redelivered and replayed twice.
func TestSlowTargetNoRedelivery(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	cube.setHandler(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
	})
	rf := h.routes(breakerRoutes, "CUBE", cube.URL, "concurrency: 2", "concurrency: 1", "timeout: 5s", "timeout: 2s")
	h.start(Config{Routes: rf, AckWait: 1500 * time.Millisecond})
	var evs []schemas.RequestEvent
	for i := range 15 { // ≥ 4.5s of work at concurrency 1: three times AckWait
		evs = append(evs, event(fmt.Sprintf("slow-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
	}
	h.publish(evs...)
	h.results(15)
	h.settled()
	count := map[string]int{}
	for _, s := range cube.requests() {
		count[s.Path]++
	}
	for p, c := range count {
		if c != 1 {
			t.Errorf("%s replayed %d times", p, c)
		}
	}
	if info := h.consumer(DurableName(DefaultDurable, "saju")); info.NumRedelivered != 0 {
		t.Errorf("%d messages redelivered", info.NumRedelivered)
	}
}

// Closing a replayer hands its buffered messages back at once (nak), so
// another replayer finishes them without waiting for AckWait.
func TestCloseHandsBackBufferedMessages(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	gate := make(chan struct{})
	var once sync.Once
	cube.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	})
	rf := h.routes(breakerRoutes, "CUBE", cube.URL, "concurrency: 2", "concurrency: 1", "timeout: 5s", "timeout: 30s")
	r1, _ := h.start(Config{Routes: rf, MaxInFlight: 8})
	var evs []schemas.RequestEvent
	for i := range 50 {
		evs = append(evs, event(fmt.Sprintf("buf-%d", i), "saju", "/api/saju/chart/{id}", "GET", fmt.Sprintf("/api/saju/chart/%d", i)))
	}
	h.publish(evs...)
	eventually(t, 10*time.Second, func() error {
		if len(cube.requests()) == 0 {
			return fmt.Errorf("cube not reached")
		}
		return nil
	})
	r1.Close()
	once.Do(func() { close(gate) })
	began := time.Now()
	h.start(Config{Routes: rf})
	h.results(50)
	h.settled()
	// AckWait here is 30s+2×30s+10s: finishing well before it proves the hand-back.
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("took %v: buffered messages waited for AckWait", d)
	}
}

// End to end on the replayer side: a chart is written to "legacy" at T, a
// delayed sync copies it to the cube's store and then advances the
// watermark, and a read of that chart captured just after T is replayed.
// With the barrier the cube answers like legacy did; without it (no
// sync_target) the replay races the sync and the cube answers 404 — the
// false mismatch the barrier exists to prevent.
func TestFreshnessBarrierPreventsLagMismatch(t *testing.T) {
	for _, withBarrier := range []bool{true, false} {
		t.Run(fmt.Sprintf("barrier=%v", withBarrier), func(t *testing.T) {
			h := newHarness(t)
			var mu sync.Mutex
			cubeStore := map[string]string{}
			cube := newCube(t, "cube")
			cube.setHandler(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				body, ok := cubeStore[r.URL.Path]
				mu.Unlock()
				if !ok {
					http.NotFound(w, r)
					return
				}
				fmt.Fprint(w, body)
			})
			yaml := freshRoutes
			if !withBarrier {
				yaml = strings.Replace(yaml, "sync_target: saju-cube", "", 1)
			}
			r, _ := h.start(Config{Routes: h.routes(yaml, "CUBE", cube.URL, "WAIT", "30s")})
			if _, err := openKV(h.ctx, h.js); err != nil { // the sync stage's bucket
				t.Fatal(err)
			}

			committed := time.Now().UTC()
			chart := `{"id":9,"day_pillar":"甲子"}`
			ev := event("read-9", "saju", "/api/saju/chart/{id}", "GET", "/api/saju/chart/9")
			ev.CapturedAt = committed.Add(5 * time.Millisecond)
			ev.Response.Body = []byte(chart)
			applySync := func() { // sync applies the legacy transaction, then advances the watermark
				mu.Lock()
				cubeStore["/api/saju/chart/9"] = chart
				mu.Unlock()
				putWatermark(t, h, "saju-cube", committed.Add(10*time.Millisecond))
			}
			h.publish(ev)
			if withBarrier {
				// Sync lags: it applies only once the replay is held at the barrier.
				eventually(t, 30*time.Second, func() error {
					if got := testutil.ToFloat64(r.m.freshnessWaiting.WithLabelValues("saju")); got != 1 {
						return fmt.Errorf("%v requests waiting at the barrier", got)
					}
					return nil
				})
				applySync()
			}
			res := h.results(1)["read-9"]
			if !withBarrier {
				applySync() // sync lags past the replay, which did not wait
			}
			if res.Cube == nil {
				t.Fatalf("no cube answer: %q", res.CubeError)
			}
			same := res.Cube.Status == res.Legacy.Status && string(res.Cube.Body) == string(res.Legacy.Body)
			if withBarrier && (!same || res.Freshness.Stale) {
				t.Errorf("with the barrier: cube %d %s vs legacy %d %s, freshness %+v", res.Cube.Status, res.Cube.Body, res.Legacy.Status, res.Legacy.Body, res.Freshness)
			}
			if !withBarrier && same {
				t.Errorf("without the barrier the replay should have raced the sync (cube %d %s)", res.Cube.Status, res.Cube.Body)
			}
		})
	}
}

// A service whose cube lags (its requests wait on the freshness barrier)
// does not hold up another service: each has its own durable and slots.
func TestLaggingServiceDoesNotBlockOthers(t *testing.T) {
	h := newHarness(t)
	lagging, fine := newCube(t, "lagging"), newCube(t, "fine")
	rf := h.routes(`
services:
  - name: lagging
    cube_url: LAG
    sync_target: lag-db
    freshness_wait: 20s
    routes:
      - route: /a/{id}
  - name: fine
    cube_url: FINE
    routes:
      - route: /b/{id}
`, "LAG", lagging.URL, "FINE", fine.URL)
	h.start(Config{Routes: rf, MaxInFlight: 4})
	var evs []schemas.RequestEvent
	for i := range 40 { // ten times the slots, all waiting on a watermark that does not come
		evs = append(evs, event(fmt.Sprintf("lag-%d", i), "lagging", "/a/{id}", "GET", fmt.Sprintf("/a/%d", i)))
	}
	for i := range 10 {
		evs = append(evs, event(fmt.Sprintf("fine-%d", i), "fine", "/b/{id}", "GET", fmt.Sprintf("/b/%d", i)))
	}
	began := time.Now()
	h.publish(evs...)
	res := h.results(10)
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("the healthy service took %v behind the lagging one", d)
	}
	for id := range res {
		if !strings.HasPrefix(id, "fine-") {
			t.Errorf("%s replayed although its watermark never came", id)
		}
	}
	if n := len(lagging.requests()); n != 0 {
		t.Errorf("lagging cube saw %d requests", n)
	}
	if c := h.consumer(DurableName(DefaultDurable, "lagging")); c.NumAckPending == 0 {
		t.Error("lagging service's requests are not in flight")
	}
}

const recheckRoutes = `
services:
  - name: data
    cube_url: CUBE
    legacy_url: LEGACY
    credentials: {kind: bearer, token_env: SERVICE_TOKEN}
    routes:
      - route: /item/{id}
        methods: [GET]
      - route: /write/{id}
        replay: always
  - name: nolegacy
    cube_url: CUBE
    routes:
      - route: /item/{id}
`

// A read whose cube answer differs from the captured one is asked of
// legacy again at replay time (issue 17 item 8): LegacyRecheck equal to the
// cube's answer means the data moved on. Equal answers, writes and services
// without legacy_url are never rechecked; the recheck carries no cube
// credentials.
func TestLegacyRecheck(t *testing.T) {
	h := newHarness(t)
	answers := func(m map[string]string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			body, ok := m[r.URL.Path]
			if !ok {
				w.WriteHeader(404)
				return
			}
			fmt.Fprint(w, body)
		}
	}
	cube, legacy := newCube(t, "cube"), newCube(t, "legacy")
	cube.setHandler(answers(map[string]string{
		"/item/moved": `{"n":2}`, "/item/differs": `{"n":4}`, "/item/same": `{"legacy":true}`, "/write/1": `{"n":9}`, "/item/nolegacy": `{"n":5}`,
	}))
	legacy.setHandler(answers(map[string]string{"/item/moved": `{"n":2}`, "/item/differs": `{"n":3}`}))
	r, _ := h.start(Config{
		Routes:    h.routes(recheckRoutes, "CUBE", cube.URL, "LEGACY", legacy.URL),
		LookupEnv: func(k string) (string, bool) { return "cube-secret", k == "SERVICE_TOKEN" },
	})
	h.publish(
		event("moved", "data", "/item/{id}", "GET", "/item/moved"),
		event("differs", "data", "/item/{id}", "GET", "/item/differs"),
		event("same", "data", "/item/{id}", "GET", "/item/same"),
		event("write", "data", "/write/{id}", "POST", "/write/1"),
		event("nolegacy", "nolegacy", "/item/{id}", "GET", "/item/nolegacy"),
	)
	res := h.results(5)
	h.settled()
	for id, want := range map[string]string{"moved": `{"n":2}`, "differs": `{"n":3}`} {
		rc := res[id].LegacyRecheck
		if rc == nil || rc.Status != 200 || string(rc.Body) != want {
			t.Errorf("%s: legacy recheck %+v, want 200 %s", id, rc, want)
		}
	}
	for _, id := range []string{"same", "write", "nolegacy"} {
		if rc := res[id].LegacyRecheck; rc != nil || res[id].Cube == nil {
			t.Errorf("%s: legacy recheck %+v (cube %v), want none", id, rc, res[id].Cube)
		}
	}
	got := legacy.requests()
	if len(got) != 2 {
		t.Errorf("legacy asked %d times, want 2 (moved, differs)", len(got))
	}
	for _, s := range got {
		if a := s.Header.Get("Authorization"); a != "" {
			t.Errorf("legacy recheck carried Authorization %q", a)
		}
	}
	for _, o := range []struct {
		outcome string
		n       float64
	}{{"moved-on", 1}, {"differs", 1}, {"error", 0}} {
		if got := testutil.ToFloat64(r.m.rechecks.WithLabelValues("data", "/item/{id}", o.outcome)); got != o.n {
			t.Errorf("legacy_rechecks_total{%s} = %v, want %v", o.outcome, got, o.n)
		}
	}
}
