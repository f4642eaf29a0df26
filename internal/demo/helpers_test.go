package demo

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/heal7/shadowcube/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// do sends one request to h in process and returns the status and body.
func do(tb testing.TB, h http.Handler, method, path string, body any, hdr map[string]string) (int, []byte) {
	tb.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		data, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

var dryRun = map[string]string{HeaderShadow: "1"}

// chart POSTs a dry-run chart request and decodes the 200 answer.
func chart(tb testing.TB, h http.Handler, req ChartRequest) ChartResponse {
	tb.Helper()
	code, body := do(tb, h, "POST", "/api/saju/chart", req, dryRun)
	if code != 200 {
		tb.Fatalf("POST %+v: status %d: %s", req, code, body)
	}
	var doc ChartResponse
	if err := json.Unmarshal(body, &doc); err != nil {
		tb.Fatalf("decode %s: %v", body, err)
	}
	return doc
}

// pair builds a legacy service and a cube without databases (dry-run only).
func pair(tb testing.TB) (*SajuService, *SajuService) {
	tb.Helper()
	l, err := NewLegacySaju(SajuConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := NewSajuCube(SajuConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	return l, c
}

// hanjaPillars normalises a document's pillars to Hanja [year month day hour].
func hanjaPillars(tb testing.TB, d ChartResponse) [4]string {
	tb.Helper()
	hour := ""
	if d.Pillars.Hour != nil {
		hour = *d.Pillars.Hour
	}
	ch, err := ChartFromPillars(d.Pillars.Year, d.Pillars.Month, d.Pillars.Day, hour)
	if err != nil {
		tb.Fatalf("pillars %+v: %v", d.Pillars, err)
	}
	return KeyOf(ch).Pillars
}

// diffDocs compares two answers field by field the way the comparator must:
// pillars, day master, elements, ten gods, luck direction and pillars, with
// Hanja equal to Hangul. It returns the differing field names.
func diffDocs(tb testing.TB, a, b ChartResponse) []string {
	tb.Helper()
	var d []string
	pa, pb := hanjaPillars(tb, a), hanjaPillars(tb, b)
	for i, n := range []string{"pillars.year", "pillars.month", "pillars.day", "pillars.hour"} {
		if pa[i] != pb[i] {
			d = append(d, n)
		}
	}
	sa, _ := stemIndex(a.DayMaster.Stem)
	sb, _ := stemIndex(b.DayMaster.Stem)
	if sa != sb || a.DayMaster.Element != b.DayMaster.Element || a.DayMaster.YinYang != b.DayMaster.YinYang {
		d = append(d, "day_master")
	}
	if a.Elements != b.Elements {
		d = append(d, "elements")
	}
	if a.TenGods.Year != b.TenGods.Year || a.TenGods.Month != b.TenGods.Month || deref(a.TenGods.Hour) != deref(b.TenGods.Hour) {
		d = append(d, "ten_gods")
	}
	if (a.Luck == nil) != (b.Luck == nil) {
		d = append(d, "luck")
	} else if a.Luck != nil {
		if a.Luck.Direction != b.Luck.Direction {
			d = append(d, "luck.direction")
		}
		if len(a.Luck.Pillars) != len(b.Luck.Pillars) {
			d = append(d, "luck.pillars")
		} else {
			for i := range a.Luck.Pillars {
				x, err1 := parsePillar(a.Luck.Pillars[i])
				y, err2 := parsePillar(b.Luck.Pillars[i])
				if err1 != nil || err2 != nil || x != y {
					d = append(d, "luck.pillars")
					break
				}
			}
		}
	}
	return d
}
