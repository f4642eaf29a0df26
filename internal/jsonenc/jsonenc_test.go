package jsonenc

import (
	"encoding/json"
	"testing"
)

// FuzzAppendStringMatchesEncodingJSON: byte for byte what encoding/json
// writes, for any string, valid UTF-8 or not.
func FuzzAppendStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "<a href=x>&amp;</a>", "tab\tnl\ncr\r\x00\x1f\x7f",
		"한글 甲子", "\u2028\u2029", "\xff\xfe bad utf8 \xc3", "emoji 🙂", "\b\f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json = %s", s, got, want)
		}
	})
}
