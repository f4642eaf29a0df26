package routes

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

const classifyRoutes = `
services:
  - name: api
    cube_url: http://127.0.0.1:9
    legacy_url: http://127.0.0.1:8
    routes:
      - route: /graphql
        classify: {graphql: true}
        operation: graphql
      - route: /graphql-hash
        classify: {graphql: true}
        operation: graphql-hash
      - route: /rpc
        classify:
          read_when: {path: $.method, match: '^(get|list)[A-Z]'}
          write_when: {match: '"dry"\s*:\s*false'}
        operation: $.method
      - route: /plain
`

func parseClassify(t *testing.T) *Service {
	t.Helper()
	f, err := Parse("routes.yaml", []byte(classifyRoutes))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Service("api")
	if s.LegacyURL != "http://127.0.0.1:8" {
		t.Fatalf("legacy_url = %q", s.LegacyURL)
	}
	return s
}

func route(t *testing.T, s *Service, path string) *Route {
	t.Helper()
	r, ok := s.Match("POST", path)
	if !ok {
		t.Fatalf("no route %s", path)
	}
	return r
}

func TestDefaultPolicyIsReads(t *testing.T) {
	s := parseClassify(t)
	for _, r := range s.Routes {
		if r.Replay != ReplayReads || r.ReplaysWrites() {
			t.Errorf("route %s: replay %q, replays writes %v; want reads, false", r.Route, r.Replay, r.ReplaysWrites())
		}
	}
}

func TestClassify(t *testing.T) {
	s := parseClassify(t)
	gql, rpc, plain := route(t, s, "/graphql"), route(t, s, "/rpc"), route(t, s, "/plain")
	tests := []struct {
		name          string
		r             *Route
		method, query string
		body          string
		read          bool
		reason        string
	}{
		{"gql query", gql, "POST", "", `{"query":"query Q { user(id: 1) { name } }"}`, true, ClassGraphQLQuery},
		{"gql shorthand query", gql, "POST", "", `{"query":"{ user(id: 1) { name } }"}`, true, ClassGraphQLQuery},
		{"gql mutation", gql, "POST", "", `{"query":"mutation M { deleteUser(id: 1) }"}`, false, ClassGraphQLMutation},
		{"gql subscription", gql, "POST", "", `{"query":"subscription S { events { id } }"}`, false, ClassGraphQLSubscribe},
		{"gql picks operationName: query", gql, "POST", "", `{"query":"mutation M { x } query Q { y }","operationName":"Q"}`, true, ClassGraphQLQuery},
		{"gql picks operationName: mutation", gql, "POST", "", `{"query":"query Q { y } mutation M { x }","operationName":"M"}`, false, ClassGraphQLMutation},
		{"gql two ops without name", gql, "POST", "", `{"query":"query Q { y } query R { x }"}`, false, ClassGraphQLInvalid},
		{"gql unknown operationName", gql, "POST", "", `{"query":"query Q { y }","operationName":"Z"}`, false, ClassGraphQLInvalid},
		{"gql parse error", gql, "POST", "", `{"query":"query { "}`, false, ClassGraphQLInvalid},
		{"gql a mutation word in a string", gql, "POST", "", `{"query":"query Q { search(text: \"mutation\") { id } }"}`, true, ClassGraphQLQuery},
		{"gql batch of queries", gql, "POST", "", `[{"query":"{ a }"},{"query":"query B { b }"}]`, true, ClassGraphQLQuery},
		{"gql batch with a mutation", gql, "POST", "", `[{"query":"{ a }"},{"query":"mutation { b }"}]`, false, ClassGraphQLMutation},
		{"gql raw document", gql, "POST", "", `query Q { a }`, true, ClassGraphQLQuery},
		{"gql over GET", gql, "GET", "query=%7B+a+%7D", "", true, ClassGraphQLQuery},
		{"gql mutation over GET", gql, "GET", "query=mutation+%7B+a+%7D", "", false, ClassGraphQLMutation},
		{"gql empty", gql, "POST", "", "", false, ClassGraphQLInvalid},
		{"rpc read", rpc, "POST", "", `{"method":"getUser","params":[1]}`, true, ClassReadWhen},
		{"rpc write", rpc, "POST", "", `{"method":"createUser"}`, false, ClassMethod},
		{"rpc read made write", rpc, "POST", "", `{"method":"getUser","dry": false}`, false, ClassWriteWhen},
		{"rpc not json", rpc, "POST", "", `method=getUser`, false, ClassMethod},
		{"rpc GET", rpc, "GET", "", ``, true, ClassMethod},
		{"plain GET", plain, "GET", "", "", true, ClassMethod},
		{"plain HEAD", plain, "HEAD", "", "", true, ClassMethod},
		{"plain OPTIONS", plain, "OPTIONS", "", "", true, ClassMethod},
		{"plain POST", plain, "POST", "", `{"q":1}`, false, ClassMethod},
		{"plain DELETE", plain, "DELETE", "", "", false, ClassMethod},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			read, reason := tc.r.Classify(tc.method, tc.query, []byte(tc.body))
			if read != tc.read || reason != tc.reason {
				t.Fatalf("Classify = %v, %q; want %v, %q", read, reason, tc.read, tc.reason)
			}
		})
	}
}

func TestOperationKey(t *testing.T) {
	s := parseClassify(t)
	gql, gh, rpc, plain := route(t, s, "/graphql"), route(t, s, "/graphql-hash"), route(t, s, "/rpc"), route(t, s, "/plain")
	anon := gql.OperationKey([]byte(`{"query":"{ user(id: 1) { name ...F } } fragment F on User { id }"}`))
	if !strings.HasPrefix(anon, "sha256:") || len(anon) != len("sha256:")+16 {
		t.Fatalf("anonymous operation key = %q, want sha256:<16 hex>", anon)
	}
	// Whitespace, comments and layout do not change the normalised hash.
	same := gql.OperationKey([]byte(`{"query":"# a comment\n{\n  user(id: 1) {\n    name\n    ...F\n  }\n}\nfragment F on User {\n  id\n}"}`))
	if same != anon {
		t.Errorf("reformatted document: key %q, want %q", same, anon)
	}
	if other := gql.OperationKey([]byte(`{"query":"{ user(id: 2) { name ...F } } fragment F on User { id }"}`)); other == anon {
		t.Errorf("a different document has the same key %q", other)
	}
	tests := []struct {
		name string
		r    *Route
		body string
		want string
	}{
		{"named", gql, `{"query":"query GetUser { user { name } }"}`, "GetUser"},
		{"operationName selects", gql, `{"query":"query A { a } query B { b }","operationName":"B"}`, "B"},
		{"batch", gql, `[{"query":"query A { a }"},{"query":"query B { b }"}]`, "A+B"},
		{"unparseable", gql, `{"query":"query {"}`, ""},
		{"hash even when named", gh, `{"query":"query GetUser { user { name } }"}`, gh.OperationKey([]byte(`{"query":"query   GetUser{user{name}}"}`))},
		{"jsonpath string", rpc, `{"method":"getUser"}`, "getUser"},
		{"jsonpath number", rpc, `{"method":7}`, "7"},
		{"jsonpath missing", rpc, `{"x":1}`, ""},
		{"jsonpath not json", rpc, `nope`, ""},
		{"no operation key", plain, `{"method":"getUser"}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.OperationKey([]byte(tc.body)); got != tc.want {
				t.Fatalf("OperationKey = %q, want %q", got, tc.want)
			}
		})
	}
	if k := gh.OperationKey([]byte(`{"query":"query GetUser { user { name } }"}`)); !strings.HasPrefix(k, "sha256:") {
		t.Errorf("graphql-hash key = %q", k)
	}
	if k := gql.OperationKeyOf("GET", "query=query+Q+%7B+a+%7D", nil); k != "Q" {
		t.Errorf("GET operation key = %q, want Q", k)
	}
}

func TestClassifyBadFields(t *testing.T) {
	tests := []struct{ name, old, new, field string }{
		{"bad regex", `match: '^(get|list)[A-Z]'`, `match: '(get'`, "services[0].routes[2].classify.read_when"},
		{"bad jsonpath", `path: $.method,`, `path: '$.[?',`, "services[0].routes[2].classify.read_when"},
		{"empty condition", `write_when: {match: '"dry"\s*:\s*false'}`, `write_when: {}`, "services[0].routes[2].classify.write_when"},
		{"unknown classify key", `classify: {graphql: true}`, `classify: {graphq: true}`, "services[0].routes[0].classify.graphq"},
		{"bad operation", `operation: $.method`, `operation: method`, "services[0].routes[2].operation"},
		{"bad legacy url", `legacy_url: http://127.0.0.1:8`, `legacy_url: 127.0.0.1:8`, "services[0].legacy_url"},
		{"bad replay", "      - route: /plain", "      - route: /plain\n        replay: writes", "services[0].routes[3].replay"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(classifyRoutes, tc.old) {
				t.Fatalf("fixture lacks %q", tc.old)
			}
			_, err := Parse("routes.yaml", []byte(strings.Replace(classifyRoutes, tc.old, tc.new, 1)))
			var re *Error
			if !errors.As(err, &re) || re.Field != tc.field {
				t.Fatalf("error %v; want one on field %s", err, tc.field)
			}
		})
	}
}

// Property: a GraphQL batch of random operations (types, names, layouts)
// is a read exactly when every operation is a query, and its operation key
// is the names joined with "+" (a hash for anonymous ones) whatever the
// layout.
func TestGraphQLClassifyProperty(t *testing.T) {
	s := parseClassify(t)
	gql := route(t, s, "/graphql")
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 4).Draw(t, "ops")
		var reqs, relaid []string
		var keys []string
		read := true
		for i := range n {
			kind := rapid.SampledFrom([]string{"query", "mutation", "subscription"}).Draw(t, "kind")
			named := rapid.Bool().Draw(t, "named")
			field := rapid.StringMatching(`[a-z][a-zA-Z0-9]{0,8}`).Draw(t, "field")
			name := ""
			if named {
				name = fmt.Sprintf("Op%d%s", i, rapid.StringMatching(`[A-Z][a-z]{0,5}`).Draw(t, "name"))
			}
			if kind != "query" {
				read = false
			}
			doc := fmt.Sprintf("%s %s { %s { id } }", kind, name, field)
			// The same document laid out differently, with a comment.
			other := fmt.Sprintf("# c\n%s   %s\n{\n\t%s {\n id\n}\n}\n", kind, name, field)
			if kind == "query" && !named && rapid.Bool().Draw(t, "shorthand") {
				doc = fmt.Sprintf("{ %s { id } }", field)
			}
			reqs = append(reqs, fmt.Sprintf(`{"query":%q}`, doc))
			relaid = append(relaid, fmt.Sprintf(`{"query":%q}`, other))
			if named {
				keys = append(keys, name)
			} else {
				keys = append(keys, "?")
			}
		}
		body := "[" + strings.Join(reqs, ",") + "]"
		if n == 1 && rapid.Bool().Draw(t, "single") {
			body = reqs[0]
		}
		got, reason := gql.Classify("POST", "", []byte(body))
		if got != read {
			t.Fatalf("Classify(%s) = %v (%s), want %v", body, got, reason, read)
		}
		key := gql.OperationKey([]byte(body))
		parts := strings.Split(key, "+")
		if len(parts) != n {
			t.Fatalf("key %q of %d operations", key, n)
		}
		for i, p := range parts {
			if keys[i] != "?" && p != keys[i] || keys[i] == "?" && !strings.HasPrefix(p, "sha256:") {
				t.Fatalf("key part %d = %q, want %q", i, p, keys[i])
			}
		}
		relaidBody := "[" + strings.Join(relaid, ",") + "]"
		if strings.HasPrefix(body, "[") && !strings.Contains(body, `"{ `) {
			if k := gql.OperationKey([]byte(relaidBody)); k != key {
				t.Fatalf("relaid document key %q, want %q", k, key)
			}
		}
	})
}
