package shadow

import (
	"context"
	"net/http"
	"net/url"
	"path"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// FuzzNewRequest builds replays from arbitrary captured fields: it never
// panics, the replay goes to the target's host with the captured path, and
// no user credential survives — only the target's own.
func FuzzNewRequest(f *testing.F) {
	f.Add("GET", "/api/saju/chart/1", "a=1&b=2", "Authorization", "Bearer user", true)
	f.Add("POST", "/x", "", "cookie", "s=1", false)
	f.Add("get", "//evil.example/x", "%zz", "X-API-KEY", "k", true)
	f.Add("DELETE", "/a b/..%2f", "q=\x00", "Proxy-Authorization", "Basic x", false)
	f.Add("GET", "/", "", "Host", "evil.example", true)
	f.Add("GET", "/../admin", "", "X-A", "1", false)
	f.Add("GET", "/a/../../admin", "", "X-A", "1", false)
	f.Add("GET", "/..", "", "X-A", "1", false)
	f.Add("GET", "admin", "", "X-A", "1", false)
	f.Add("GET", "/a%2Fb/\u00e9 x?y#z", "a=1#frag", "X-A", "1", false)
	f.Add("GET", "/q", "a=%zz&b= c;d", "X-A", "1", false)
	r := &Replayer{cfg: Config{Now: time.Now}}
	base, _ := url.Parse("http://cube.internal:8001/prefix")
	f.Fuzz(func(t *testing.T, method, reqPath, query, hk, hv string, withCreds bool) {
		tg := &target{name: "cube", base: base, headers: http.Header{"X-Tenant": {"shadow"}}}
		if withCreds {
			tg.creds = staticBearer("Bearer service")
		}
		ev := &schemas.RequestEvent{Method: method, Path: reqPath, Query: query, Headers: http.Header{
			hk: {hv}, "Authorization": {"Bearer user"}, "Cookie": {"u=1"},
		}}
		req, err := r.newRequest(context.Background(), tg, ev, false)
		if err != nil {
			return // an unusable capture becomes a cube_error, not a panic
		}
		// Built without url.Parse, the URL is exactly what url.Parse gives
		// back from its text (as the slower way built it).
		if plainQuery(query) {
			back, err := url.Parse(req.URL.String())
			if err != nil || !reflect.DeepEqual(back, req.URL) || req.Host != back.Host {
				t.Fatalf("replay URL %#v (host %q) parses back as %#v, %v", req.URL, req.Host, back, err)
			}
		}
		if req.URL.Host != "cube.internal:8001" {
			t.Fatalf("replay of path %q goes to host %q", reqPath, req.URL.Host)
		}
		// The cube's server resolves dot segments: the resolved path
		// must stay under the prefix (not /prefix/../admin, not /prefixadmin).
		if p := path.Clean(req.URL.Path); p != "/prefix" && !strings.HasPrefix(p, "/prefix/") {
			t.Fatalf("replay of path %q goes to %q, outside the cube prefix /prefix/", reqPath, req.URL.Path)
		}
		auth := req.Header.Values("Authorization")
		if withCreds && (len(auth) != 1 || auth[0] != "Bearer service") {
			t.Fatalf("Authorization %q, want the service's", auth)
		}
		if !withCreds && len(auth) != 0 {
			t.Fatalf("user Authorization %q forwarded", auth)
		}
		for _, h := range []string{"Cookie", "Proxy-Authorization", "X-Api-Key", "Host"} {
			if v := req.Header.Values(h); len(v) != 0 {
				t.Fatalf("%s %q forwarded", h, v)
			}
		}
		if req.Header.Get("X-Tenant") != "shadow" {
			t.Fatalf("header rewrite lost")
		}
	})
}
