package consumers

import (
	"strings"
	"testing"
	"time"
)

// TestConfigRejectsNegative (issue 11.3): negative numeric settings of the
// sync stage are errors naming the field, not silently replaced by defaults
// (the old code used 5000 for MaxBatch -3).
func TestConfigRejectsNegative(t *testing.T) {
	_, err := New(Config{Mapping: &Mapping{}, SourceURL: "postgres://unused", MaxBatch: -3, AckWait: -time.Second, RetryMax: -1}, Deps{})
	if err == nil {
		t.Fatal("New accepted MaxBatch -3, AckWait -1s, RetryMax -1ns")
	}
	for _, want := range []string{"MaxBatch -3: must be at least 1", "AckWait -1s: must be positive", "RetryMax -1ns: must be positive"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	c := ApplierConfig{MaxBatch: -1, PollStop: -time.Second, RetryMin: 2 * time.Second, RetryMax: time.Second}
	err = c.validate()
	for _, want := range []string{"MaxBatch -1", "PollStop -1s", "RetryMin 2s is above RetryMax 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("applier config error %v does not say %q", err, want)
		}
	}
	if err := (&Config{Mapping: &Mapping{}, SourceURL: "postgres://unused"}).validate(); err != nil {
		t.Errorf("zero config (defaults): %v", err)
	}
	if err := (&ApplierConfig{MaxBatch: 10, RetryMin: time.Millisecond, RetryMax: time.Second}).validate(); err != nil {
		t.Errorf("valid applier config: %v", err)
	}
}
