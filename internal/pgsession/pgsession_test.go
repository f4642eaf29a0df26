package pgsession

import "testing"

// TestApplyOverridesURL: the pinned settings replace what a URL asked for,
// leave other parameters alone, and Settings hands out a copy.
func TestApplyOverridesURL(t *testing.T) {
	params := map[string]string{"TimeZone": "Asia/Seoul", "datestyle": "German", "application_name": "x"}
	Apply(params)
	if params["TimeZone"] != "UTC" || params["application_name"] != "x" || params["DateStyle"] != "ISO, YMD" || len(params) != len(settings)+1 {
		t.Fatalf("params = %v", params)
	}
	s := Settings()
	s["TimeZone"] = "Asia/Seoul"
	if Settings()["TimeZone"] != "UTC" {
		t.Fatal("Settings returned the package's own map")
	}
}
