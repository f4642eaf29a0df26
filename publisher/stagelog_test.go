package publisher

import (
	"strings"
	"testing"

	"github.com/heal7/shadowcube/internal/testenv"
)

// TestCapturerLogsStageOnce: the process sets the stage attribute on the
// logger it passes; the capturer adds only its service, so its lines carry
// each attribute once.
func TestCapturerLogsStageOnce(t *testing.T) {
	log, logs := testenv.CaptureLogger(t)
	e := newEnvLog(t, Config{Service: "saju"}, log.With("stage", "tap"))
	e.c.log.Info("probe")
	line := logs.String()
	if strings.Count(line, "stage=") != 1 || strings.Count(line, "service=saju") != 1 {
		t.Fatalf("want stage and service once each:\n%s", line)
	}
}
