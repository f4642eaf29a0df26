package demo

import (
	"strings"
	"testing"

	"github.com/heal7/shadowcube/internal/testenv"
)

// TestServiceLogsStageOnce: a demo service names itself in a service
// attribute; the stage attribute stays the one its process set.
func TestServiceLogsStageOnce(t *testing.T) {
	log, logs := testenv.CaptureLogger(t)
	b, err := newBase("legacy-ai", nil, log.With("stage", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	b.log.Info("probe")
	line := logs.String()
	if strings.Count(line, "stage=") != 1 || strings.Count(line, "service=legacy-ai") != 1 {
		t.Fatalf("want stage and service once each:\n%s", line)
	}
}
