package publisher

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func importFile(t *testing.T, e *env, path string, cfg ImportConfig) (ImportResult, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := testenv.Context(t, 30*time.Second)
	res, err := e.c.Import(ctx, path, f, cfg)
	e.flush(t)
	return res, err
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestImportJSONL(t *testing.T) {
	e := newEnv(t, Config{Routes: testService(t)})
	// Without --keyed-user-keys a record carrying a user_key is bad (line 3),
	// and a raw id in user_key (line 10) is bad either way. On the old code
	// both were published as they were.
	plain, err := e.c.Import(testenv.Context(t, 30*time.Second), "traffic.jsonl", mustOpen(t, "testdata/traffic.jsonl"), ImportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Events != 3 || len(plain.Bad) != 5 || plain.Bad[0].Line != 3 || !strings.Contains(plain.Bad[0].Msg, "--keyed-user-keys") ||
		plain.Bad[4].Line != 10 || strings.Contains(plain.Bad[4].Msg, "RAW-ALICE") {
		t.Fatalf("without --keyed-user-keys: events %d, bad %v", plain.Events, plain.Bad)
	}
	e.flush(t)
	res, err := importFile(t, e, "testdata/traffic.jsonl", ImportConfig{KeyedUserKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	for _, b := range res.Bad {
		lines = append(lines, b.Line)
		if !strings.HasPrefix(b.Error(), "testdata/traffic.jsonl:") {
			t.Errorf("error does not name the file: %v", b)
		}
	}
	if res.Events != 4 || len(lines) != 4 || lines[0] != 4 || lines[1] != 7 || lines[2] != 8 || lines[3] != 10 {
		t.Fatalf("events %d, bad lines %v (%v); want 4 events, bad lines [4 7 8 10]", res.Events, lines, res.Bad)
	}
	evs := events(t, e.js)
	if len(evs) != 4 {
		t.Fatalf("%d events in the stream, want 4", len(evs))
	}
	byPath := map[string]schemas.RequestEvent{}
	for _, ev := range evs {
		byPath[ev.Method+" "+ev.Path] = ev
		if ev.Source != schemas.SourceImport || ev.Service != "saju" || ev.V != schemas.Version {
			t.Errorf("event %+v", ev)
		}
	}
	g := byPath["GET /api/saju/chart/7"]
	if g.Route != "/api/saju/chart/{id}" || g.UserKey != e.c.UserKey("user-1") || g.Headers.Get("Authorization") != "" ||
		g.Headers.Get("X-User-Id") != "" || g.Response.Headers.Get("Set-Cookie") != "" || g.Headers.Get("X-Truth-Label") != "fire" {
		t.Errorf("GET: %+v", g)
	}
	if p := byPath["POST /api/saju/chart"]; p.UserKey != "hmac-sha256:"+strings.Repeat("ab", 32) || p.Route != "/api/saju/chart" {
		t.Errorf("POST: %+v", p)
	}
	if d := byPath["DELETE /api/saju/chart/9"]; d.ID != "given-id-1" || d.Route != OtherRoute || d.TraceParent == "" {
		t.Errorf("DELETE: %+v", d)
	}
	for _, m := range messages(t, e.js) {
		if bytes.Contains(m.Data(), []byte("SECRET")) || bytes.Contains(m.Data(), []byte(`"user-1"`)) || bytes.Contains(m.Data(), []byte("RAW-ALICE")) {
			t.Errorf("secret published: %s", m.Data())
		}
	}
	// Idempotent: importing again adds nothing.
	if _, err := importFile(t, e, "testdata/traffic.jsonl", ImportConfig{KeyedUserKeys: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(messages(t, e.js)); n != 4 {
		t.Fatalf("re-import: %d messages, want still 4", n)
	}
	// Fatal: stops at line 4.
	res, err = importFile(t, e, "testdata/traffic.jsonl", ImportConfig{OnError: OnErrorFatal, KeyedUserKeys: true})
	var le *LineError
	if !errors.Is(err, ErrBadRecord) || !errors.As(err, &le) || le.Line != 4 || res.Events != 2 {
		t.Fatalf("fatal import: err %v, events %d", err, res.Events)
	}
}

func TestImportHAR(t *testing.T) {
	e := newEnv(t, Config{Routes: testService(t)})
	res, err := importFile(t, e, "testdata/traffic.har", ImportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 2 || len(res.Bad) != 1 || res.Bad[0].Line != 26 {
		t.Fatalf("events %d, bad %v; want 2 events and a bad entry at line 26", res.Events, res.Bad)
	}
	evs := events(t, e.js)
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	for _, ev := range evs {
		switch ev.Method {
		case "POST":
			if ev.Route != "/api/saju/chart" || ev.Query != "lang=ko" || string(ev.Body) != `{"birth_date":"1990-05-01"}` ||
				string(ev.Response.Body) != `{"day_pillar":"甲子"}` || ev.UserKey != e.c.UserKey("har-user-1") ||
				ev.Headers.Get("Cookie") != "" || ev.Response.Latency != 12500*time.Microsecond {
				t.Errorf("POST: %+v", ev)
			}
		case "GET":
			if ev.Route != "/api/saju/chart/{id}" || ev.Response.Status != 404 || ev.Headers.Get(":authority") != "" {
				t.Errorf("GET: %+v", ev)
			}
		}
	}
	if _, err := importFile(t, e, "testdata/traffic.har", ImportConfig{}); err != nil {
		t.Fatal(err)
	}
	if n := len(messages(t, e.js)); n != 2 {
		t.Fatalf("re-import: %d messages, want 2", n)
	}
	_, err = e.c.Import(testenv.Context(t, 5*time.Second), "broken.har", strings.NewReader("{\n\"log\": {\"entries\": [\n{\"request\": }\n]}}"), ImportConfig{})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 3 {
		t.Fatalf("broken HAR: %v", err)
	}
}

// TestImportGoReplay imports the GoReplay recordings made by
// sniff/testdata/gen (real gor, plain and gzipped): gor missed the two
// pipelined requests, so their responses are bad records at their offsets,
// and the three other exchanges become events.
func TestImportGoReplay(t *testing.T) {
	for _, name := range []string{"sniff/testdata/traffic.gor", "sniff/testdata/traffic.gor.gz"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Config{})
			res, err := importFile(t, e, name, ImportConfig{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Events != 3 || len(res.Bad) != 2 {
				t.Fatalf("events %d, bad %v; want 3 events and the 2 pipelined responses gor recorded alone", res.Events, res.Bad)
			}
			if !strings.HasSuffix(name, ".gz") {
				raw, err := os.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range res.Bad {
					if b.Line != 0 || !bytes.HasPrefix(raw[b.Offset:], []byte("2 ")) || !strings.Contains(b.Msg, "no request") ||
						!strings.HasPrefix(b.Error(), fmt.Sprintf("%s:%d: ", name, b.Offset)) {
						t.Errorf("bad record %v does not point at a response payload", b)
					}
				}
			}
			byID := map[string]schemas.RequestEvent{}
			for _, ev := range events(t, e.js) {
				byID[ev.Headers.Get("X-Request-Id")] = ev
				if ev.Source != schemas.SourceImport || !strings.HasPrefix(ev.ID, "imp-") || ev.CapturedAt.Year() != 2026 || ev.Response.Latency <= 0 {
					t.Errorf("event %+v", ev)
				}
			}
			r1, r4, r5 := byID["r1"], byID["r4"], byID["r5"]
			if r1.Method != "GET" || r1.Path != "/api/saju/chart" || r1.Query != "year=1990" || r1.Response.Status != 200 ||
				string(r1.Response.Body) != `{"year":"1990","pillar":"gyeong-o"}` || r1.UserKey != e.c.UserKey("user-7") || r1.Headers.Get("X-User-Id") != "" {
				t.Errorf("r1: %+v", r1)
			}
			if r4.Method != "POST" || string(r4.Body) != `{"text":"hi"}` || string(r4.Response.Body) != `{"label":"calm","confidence":0.91,"bytes":13}` {
				t.Errorf("r4 (chunked request body): %+v", r4)
			}
			if r5.Response.Headers.Get("Content-Encoding") != "gzip" || len(r5.Response.Body) < 10 || r5.Response.Body[0] != 0x1f {
				t.Errorf("r5 (gzip answer, kept as sent): %+v", r5)
			}
		})
	}
}

// TestImportGoReplayMalformed: bad payloads are FILE:OFFSET errors,
// skipped or fatal.
func TestImportGoReplayMalformed(t *testing.T) {
	good := "1 aa01 1796050436593733815 0\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n" + gorSeparator +
		"2 aa01 1796050436593833815 100\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + gorSeparator
	badHeader := "7 zz 12 0\nGET / HTTP/1.1\r\n\r\n" + gorSeparator
	badTime := "1 bb01 yesterday 0\nGET / HTTP/1.1\r\n\r\n" + gorSeparator
	notHTTP := "1 cc01 1796050436593733815 0\n\x16\x03\x01 hello" + gorSeparator + "2 cc01 1796050436593833815 0\nHTTP/1.1 200 OK\r\n\r\n" + gorSeparator
	data := good + badHeader + badTime + notHTTP
	e := newEnv(t, Config{})
	res, err := e.c.Import(testenv.Context(t, 30*time.Second), "bad.gor", strings.NewReader(data), ImportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	offs := []int64{int64(len(good)), int64(len(good) + len(badHeader)), int64(len(good) + len(badHeader) + len(badTime))}
	if res.Events != 1 || len(res.Bad) != 3 {
		t.Fatalf("events %d, bad %v", res.Events, res.Bad)
	}
	for i, b := range res.Bad {
		if b.Offset != offs[i] || !strings.HasPrefix(b.Error(), fmt.Sprintf("bad.gor:%d: ", offs[i])) {
			t.Errorf("bad %d: %v, want offset %d", i, b, offs[i])
		}
	}
	_, err = e.c.Import(testenv.Context(t, 30*time.Second), "bad.gor", strings.NewReader(data), ImportConfig{OnError: OnErrorFatal})
	if !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), fmt.Sprintf("bad.gor:%d: ", offs[0])) {
		t.Fatalf("fatal: %v", err)
	}
}

// FuzzGoReplayPayload: any payload pair either becomes a valid event or an
// error, never a panic; a valid event's bodies respect the cap.
func FuzzGoReplayPayload(f *testing.F) {
	f.Add([]byte("1 aa 1796050436593733815 0\nGET /x?a=1 HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("2 aa 1796050436593833815 100\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
	f.Add([]byte("1 bb 1 0\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"), []byte("2 bb 2 0\nHTTP/1.1 500 Oops\r\n\r\nbody until close"))
	c, err := New(Config{Service: "saju", MaxBody: 8, Privacy: PrivacyConfig{Secret: []byte(testSecret)}}, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		rp, err1 := parseGorPayload(req, 0)
		sp, err2 := parseGorPayload(resp, 0)
		if err1 != nil || err2 != nil {
			return
		}
		ev, err := c.gorEvent(rp, sp)
		if err != nil {
			return
		}
		if len(ev.Body) > 8 || len(ev.Response.Body) > 8 || ev.Response.Latency < 0 {
			t.Fatalf("event %+v", ev)
		}
	})
}
