package demo

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/internal/testenv"
)

func pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := testenv.Postgres(t).NewDatabase(t)
	ctx := testenv.Context(t, time.Minute)
	p, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("pool %s: %v", url, err)
	}
	t.Cleanup(p.Close)
	return p
}

func post(t *testing.T, svc *SajuService, req ChartRequest, hdr map[string]string) ChartResponse {
	t.Helper()
	code, body := do(t, svc, "POST", "/api/saju/chart", req, hdr)
	if code != 200 {
		t.Fatalf("%s POST: %d %s", svc.Name(), code, body)
	}
	var d ChartResponse
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func get(t *testing.T, svc *SajuService, id int64) (int, ChartResponse) {
	t.Helper()
	code, body := do(t, svc, "GET", "/api/saju/chart/"+strconv.FormatInt(id, 10), nil, nil)
	var d ChartResponse
	if code == 200 {
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatal(err)
		}
	}
	return code, d
}

func count(t *testing.T, db *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLegacyDatabase: real writes to saju_records on PostgreSQL, GET from
// the table, dry-run writes nothing.
func TestLegacyDatabase(t *testing.T) {
	db := pool(t)
	ctx := testenv.Context(t, time.Minute)
	svc, err := NewLegacySaju(SajuConfig{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := svc.EnsureSchema(ctx); err != nil {
			t.Fatal(err)
		}
	}
	req := ChartRequest{BirthDate: "1988-02-15", BirthTime: strp("23:10"), Calendar: "solar", Gender: "male", City: "Seoul"}
	d := post(t, svc, req, map[string]string{HeaderUserID: "u-777"})
	if d.ID <= 0 {
		t.Fatalf("id %d, want a stored id", d.ID)
	}
	var (
		user       string
		y, m, day  int
		hour       *int
		solar      bool
		yp, mp, dp string
		hp         *string
		interp     string
		created    time.Time
	)
	err = db.QueryRow(ctx, `SELECT user_id, birth_year, birth_month, birth_day, birth_hour, is_solar, year_pillar, month_pillar, day_pillar, hour_pillar, interpretation, created_at FROM saju_records WHERE id=$1`, d.ID).
		Scan(&user, &y, &m, &day, &hour, &solar, &yp, &mp, &dp, &hp, &interp, &created)
	if err != nil {
		t.Fatal(err)
	}
	if user != "u-777" || y != 1988 || m != 2 || day != 15 || hour == nil || *hour != 23 || !solar ||
		yp != "戊辰" || mp != "甲寅" || dp != "庚子" || hp == nil || *hp != "戊子" || interp != d.Interpretation || time.Since(created) > time.Hour {
		t.Errorf("row = %v %d-%d-%d h=%v solar=%v %s %s %s %v %q %v", user, y, m, day, hour, solar, yp, mp, dp, hp, interp, created)
	}
	// Lunar input, unknown hour, user id in the body.
	lreq := ChartRequest{UserID: "u-888", BirthDate: "2023-02-15", Calendar: "lunar", LeapMonth: true, Gender: "female"}
	ld := post(t, svc, lreq, map[string]string{HeaderUserID: "ignored"})
	err = db.QueryRow(ctx, `SELECT user_id, birth_year, birth_month, birth_day, birth_hour, is_solar, hour_pillar FROM saju_records WHERE id=$1`, ld.ID).
		Scan(&user, &y, &m, &day, &hour, &solar, &hp)
	if err != nil {
		t.Fatal(err)
	}
	if user != "u-888" || y != 2023 || m != 2 || day != 15 || hour != nil || solar || hp != nil {
		t.Errorf("lunar row = %v %d-%d-%d hour=%v solar=%v hour_pillar=%v", user, y, m, day, hour, solar, hp)
	}
	code, g := get(t, svc, d.ID)
	if code != 200 || g.ID != d.ID || hanjaPillars(t, g) != hanjaPillars(t, d) || g.DayMaster != d.DayMaster || g.Elements != d.Elements ||
		g.TenGods.Year != d.TenGods.Year || deref(g.TenGods.Hour) != deref(d.TenGods.Hour) || g.Interpretation != d.Interpretation || g.Luck != nil {
		t.Errorf("GET %d = %d %+v, want the posted chart without luck", d.ID, code, g)
	}
	if code, _ := get(t, svc, 999999); code != 404 {
		t.Errorf("GET missing id: %d, want 404", code)
	}
	before := count(t, db, "saju_records")
	dry := post(t, svc, req, dryRun)
	if dry.ID != 0 || count(t, db, "saju_records") != before {
		t.Errorf("dry-run stored a row (id %d)", dry.ID)
	}
	if got := testutil.ToFloat64(svc.m.writes); got != 2 {
		t.Errorf("writes metric %v, want 2", got)
	}
}

// TestCubeDatabase: the cube serves rows the sync stage writes with the
// documented mapping (jsonb_build_object over the legacy columns) and
// answers them like the legacy does; its own writes go to cube.saju_charts
// with ids from its own range; dry-run writes nothing.
func TestCubeDatabase(t *testing.T) {
	legacyDB, cubeDB := pool(t), pool(t)
	ctx := testenv.Context(t, time.Minute)
	legacy, err := NewLegacySaju(SajuConfig{DB: legacyDB})
	if err != nil {
		t.Fatal(err)
	}
	cube, err := NewSajuCube(SajuConfig{DB: cubeDB})
	if err != nil {
		t.Fatal(err)
	}
	if err := legacy.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cube.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, req := range []ChartRequest{
		{BirthDate: "2000-01-01", BirthTime: strp("18:00"), Gender: "male"},
		{BirthDate: "1957-08-08", Gender: "female"},
		{BirthDate: "1988-01-01", Calendar: "lunar", Gender: "male", BirthTime: strp("06:30")},
	} {
		ids = append(ids, post(t, legacy, req, nil).ID)
	}
	// What the sync stage does, with the mapping of docs/architecture.md evaluated by
	// the cube's PostgreSQL.
	rows, err := legacyDB.Query(ctx, `SELECT id, user_id, birth_year, birth_month, birth_day, birth_hour, is_solar, year_pillar, month_pillar, day_pillar, hour_pillar, interpretation, created_at FROM saju_records ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		id         int64
		user       *string
		y, m, d    int
		h          *int
		solar      bool
		yp, mp, dp string
		hp         *string
		interp     string
		created    time.Time
	}
	var rs []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.user, &r.y, &r.m, &r.d, &r.h, &r.solar, &r.yp, &r.mp, &r.dp, &r.hp, &r.interp, &r.created); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		_, err := cubeDB.Exec(ctx, `INSERT INTO cube.saju_charts (id, user_id, birth_info, saju_chart, interpretation, created_at)
			SELECT $1::bigint, $2::text,
			  jsonb_build_object('year', birth_year, 'month', birth_month, 'day', birth_day, 'hour', birth_hour, 'solar_calendar', is_solar),
			  jsonb_build_object('year_pillar', year_pillar, 'month_pillar', month_pillar, 'day_pillar', day_pillar, 'hour_pillar', hour_pillar),
			  $12::text, $13::timestamptz
			FROM (SELECT $3::int AS birth_year, $4::int AS birth_month, $5::int AS birth_day, $6::int AS birth_hour, $7::bool AS is_solar,
			  $8::text AS year_pillar, $9::text AS month_pillar, $10::text AS day_pillar, $11::text AS hour_pillar) src`,
			r.id, r.user, r.y, r.m, r.d, r.h, r.solar, r.yp, r.mp, r.dp, r.hp, r.interp, r.created)
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		lc, l := get(t, legacy, id)
		cc, c := get(t, cube, id)
		if lc != 200 || cc != 200 {
			t.Fatalf("GET %d: legacy %d cube %d", id, lc, cc)
		}
		if diff := diffDocs(t, l, c); len(diff) != 0 || l.Interpretation != c.Interpretation {
			t.Errorf("GET %d: legacy and cube differ in %v", id, diff)
		}
		if !strings.ContainsAny(c.Pillars.Year, "갑을병정무기경신임계") {
			t.Errorf("cube GET prints %q, want Hangul", c.Pillars.Year)
		}
	}
	// The cube's own write.
	req := ChartRequest{UserID: "u-42", BirthDate: "1987-08-08", BirthTime: strp("11:00"), Gender: "female"}
	d := post(t, cube, req, nil)
	if d.ID < CubeOwnIDStart {
		t.Errorf("cube own id %d, want >= %d", d.ID, CubeOwnIDStart)
	}
	var bi, sc string
	if err := cubeDB.QueryRow(ctx, `SELECT birth_info::text, saju_chart::text FROM cube.saju_charts WHERE id=$1 AND user_id='u-42'`, d.ID).Scan(&bi, &sc); err != nil {
		t.Fatal(err)
	}
	if bi != `{"day": 8, "hour": 11, "year": 1987, "month": 8, "solar_calendar": true}` ||
		sc != `{"day_pillar": "己丑", "hour_pillar": "庚午", "year_pillar": "丁卯", "month_pillar": "丁未"}` {
		t.Errorf("cube row birth_info %s saju_chart %s", bi, sc)
	}
	if code, g := get(t, cube, d.ID); code != 200 || hanjaPillars(t, g) != hanjaPillars(t, d) {
		t.Errorf("GET own row: %d %+v", code, g.Pillars)
	}
	before := count(t, cubeDB, "cube.saju_charts")
	if dry := post(t, cube, req, dryRun); dry.ID != 0 || count(t, cubeDB, "cube.saju_charts") != before {
		t.Errorf("cube dry-run wrote a row")
	}
}

// TestOpsEndpoints: /healthz and /metrics on the service's own registry.
func TestOpsEndpoints(t *testing.T) {
	legacy, _ := pair(t)
	chart(t, legacy, ChartRequest{BirthDate: "2000-01-01", Gender: "male"})
	do(t, legacy, "POST", "/api/saju/chart", `{`, nil)
	if code, body := do(t, legacy, "GET", "/healthz", nil, nil); code != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("healthz %d %s", code, body)
	}
	code, body := do(t, legacy, "GET", "/metrics", nil, nil)
	for _, want := range []string{
		`shadowcube_demo_requests_total{code="200",route="/api/saju/chart",service="legacy-saju"} 1`,
		`shadowcube_demo_requests_total{code="400",route="/api/saju/chart",service="legacy-saju"} 1`,
		`shadowcube_demo_request_seconds_count{route="/api/saju/chart",service="legacy-saju"} 2`,
	} {
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}
