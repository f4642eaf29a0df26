package process

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type BoundsInner struct {
	Depth int `envconfig:"DEPTH" default:"2" min:"1" max:"10"`
}

type boundsSpec struct {
	BoundsInner
	Count   int           `envconfig:"T_COUNT" default:"4" min:"1"`
	Offset  int64         `envconfig:"T_OFFSET" default:"0" min:"-1"`
	Share   float64       `envconfig:"T_SHARE" default:"0.5" min:"0" max:"1"`
	Alpha   float64       `envconfig:"T_ALPHA" default:"0.05" min:">0" max:"<1"`
	Wait    time.Duration `envconfig:"T_WAIT" default:"1s" min:"1ms" max:"1h"`
	Rate    *float64      `envconfig:"T_RATE" min:"0" max:"1"`
	Port    uint16        `envconfig:"T_PORT" default:"80" max:"1000"`
	Untaged int           `envconfig:"T_FREE" default:"-3"`
}

func TestLoadBounds(t *testing.T) {
	tests := []struct {
		name, key, value string
		want             string // "" = accepted
	}{
		{"defaults", "", "", ""},
		{"int below min", "T_COUNT", "-5", `SHADOWCUBE_T_COUNT="-5": out of range: must be at least 1`},
		{"int zero below min", "T_COUNT", "0", `SHADOWCUBE_T_COUNT="0": out of range: must be at least 1`},
		{"int at min", "T_COUNT", "1", ""},
		{"negative min", "T_OFFSET", "-2", `SHADOWCUBE_T_OFFSET="-2": out of range: must be at least -1`},
		{"negative min kept", "T_OFFSET", "-1", ""},
		{"float above max", "T_SHARE", "1.5", `SHADOWCUBE_T_SHARE="1.5": out of range: must be at least 0 and at most 1`},
		{"float at max", "T_SHARE", "1", ""},
		{"exclusive min", "T_ALPHA", "0", `SHADOWCUBE_T_ALPHA="0": out of range: must be greater than 0 and less than 1`},
		{"exclusive max", "T_ALPHA", "1", `must be greater than 0 and less than 1`},
		{"inside exclusive", "T_ALPHA", "0.01", ""},
		{"duration negative", "T_WAIT", "-5s", `SHADOWCUBE_T_WAIT="-5s": out of range: must be at least 1ms and at most 1h0m0s`},
		{"duration zero", "T_WAIT", "0", `SHADOWCUBE_T_WAIT="0": out of range`},
		{"duration above", "T_WAIT", "2h", `must be at least 1ms and at most 1h0m0s`},
		{"pointer", "T_RATE", "-0.1", `SHADOWCUBE_T_RATE="-0.1": out of range: must be at least 0 and at most 1`},
		{"pointer in range", "T_RATE", "0.3", ""},
		{"unsigned above max", "T_PORT", "1001", `SHADOWCUBE_T_PORT="1001": out of range: must be at most 1000`},
		{"unsigned negative", "T_PORT", "-1", `SHADOWCUBE_T_PORT="-1": want a value of type uint16`},
		{"embedded", "DEPTH", "0", `SHADOWCUBE_DEPTH="0": out of range: must be at least 1 and at most 10`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.key != "" {
				t.Setenv(EnvPrefix+"_"+tc.key, tc.value)
			}
			var s boundsSpec
			err := Load(&s)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load = %v, want accepted", err)
				}
				return
			}
			var ee *EnvError
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ee) {
				t.Fatalf("Load = %v, want an EnvError containing %q", err, tc.want)
			}
		})
	}
}

// A default outside its own range is reported as such (a programming
// error caught by the first run, not a silent replacement).
func TestLoadBoundsBadDefault(t *testing.T) {
	var s struct {
		N int `envconfig:"T_BADDEF" default:"0" min:"1"`
	}
	if err := Load(&s); err == nil || !strings.Contains(err.Error(), "the default is out of range") {
		t.Fatalf("Load = %v", err)
	}
	var bad struct {
		S string `envconfig:"T_STR" min:"1"`
	}
	if err := Load(&bad); err == nil || !strings.Contains(err.Error(), "want a number or duration") {
		t.Fatalf("min tag on a string: Load = %v", err)
	}
}
