package comparator

import "testing"

func TestPatterns(t *testing.T) {
	k := func(s string) step { return step{key: s} }
	i := func(n int) step { return step{index: n, isIdx: true} }
	cases := []struct {
		pat   string
		path  []step
		match bool
	}{
		{"$.request_id", []step{k("request_id")}, true},
		{"$.request_id", []step{k("request_id"), k("x")}, false},
		{"$.a[*].b", []step{k("a"), i(3), k("b")}, true},
		{"$.a[*].b", []step{k("a"), k("3"), k("b")}, false},
		{"$.a[2]", []step{k("a"), i(2)}, true},
		{"$.a[2]", []step{k("a"), i(1)}, false},
		{"$['odd.key']", []step{k("odd.key")}, true},
		{`$["q"]`, []step{k("q")}, true},
		{"$..id", []step{k("x"), i(0), k("id")}, true},
		{"$..id", []step{k("id")}, true},
		{"$..id", []step{k("idx")}, false},
		{"$.*", []step{k("anything")}, true},
		{"$", nil, true},
	}
	for _, tc := range cases {
		p, err := ParsePattern(tc.pat)
		if err != nil {
			t.Fatalf("%s: %v", tc.pat, err)
		}
		if got := p.match(tc.path); got != tc.match {
			t.Errorf("%s on %s = %v, want %v", tc.pat, formatPath(tc.path, false), got, tc.match)
		}
	}
	for _, bad := range []string{"request_id", "$.", "$.a[", "$.a[x]", "$.a[-1]", "$..", "$x"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if got := formatPath([]step{k("a"), i(2), k("odd key"), k("it's")}, false); got != `$.a[2]['odd key']['it\'s']` {
		t.Errorf("formatPath = %s", got)
	}
	if got := generalisePath("$.luck.pillars[3].x[12]"); got != "$.luck.pillars[*].x[*]" {
		t.Errorf("generalisePath = %s", got)
	}
}
