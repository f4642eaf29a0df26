package consumers

import (
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

var update = flag.Bool("update", false, "rewrite golden files")

const sajuLegacyDDL = `CREATE TABLE public.saju_records (
  id bigserial PRIMARY KEY, user_id text NOT NULL,
  birth_year int NOT NULL, birth_month int NOT NULL, birth_day int NOT NULL, birth_hour int,
  is_solar boolean NOT NULL DEFAULT true,
  year_pillar text, month_pillar text, day_pillar text, hour_pillar text,
  interpretation text, created_at timestamptz NOT NULL DEFAULT now())`

const sajuCubeDDL = `CREATE SCHEMA cube;
CREATE TABLE cube.saju_charts (
  id bigint PRIMARY KEY, user_id text NOT NULL, birth_info jsonb NOT NULL, saju_chart jsonb NOT NULL,
  interpretation text, created_at timestamptz NOT NULL)`

// TestSajuMappingGolden syncs legacy saju_records rows through the docs/architecture.md
// mapping and compares the nested cube rows with a golden file.
func TestSajuMappingGolden(t *testing.T) {
	e := newEnv(t)
	e.exec(e.src, sajuLegacyDDL)
	e.exec(e.dst, sajuCubeDDL)
	data, err := os.ReadFile("testdata/saju.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := e.loadMapping(string(data))
	f := e.cdc("shadowcube")
	e.exec(e.src, `INSERT INTO saju_records (user_id, birth_year, birth_month, birth_day, birth_hour, is_solar,
	  year_pillar, month_pillar, day_pillar, hour_pillar, interpretation, created_at) VALUES
	 ('u-1', 1990, 5, 15, 14, true, '경오', '신사', '갑자', '신미', '목이 강한 사주', '2024-03-01 09:00:00+09'),
	 ('u-2', 1985, 12, 31, NULL, false, '을축', '무자', '병인', NULL, NULL, '2024-03-02 00:00:00+00'),
	 ('u-3', 2000, 1, 1, 0, true, '기묘', '병자', '무오', '임자', 'line1
line2 "quoted" \ backslash', '2024-03-03 12:34:56.789+00')`)
	var evs []schemas.ChangeEvent
	for _, id := range []string{"1", "2", "3"} {
		r, c := f.row("public.saju_records", "id = "+id)
		evs = append(evs, f.ev(schemas.OpInsert, "public.saju_records", r, nil, c))
	}
	f.tx(evs...)
	e.exec(e.src, `UPDATE saju_records SET hour_pillar = '정해', birth_hour = 22 WHERE id = 2`)
	r, c := f.row("public.saju_records", "id = 2")
	last := f.tx(f.ev(schemas.OpUpdate, "public.saju_records", r, nil, c))
	_, stop := e.startSync(m, 100)
	e.waitCheckpoint("saju-cube", "shadowcube", last, 30*time.Second)
	stop()
	got := strings.Join(tableText(t, e.dst, "cube.saju_charts"), "\n") + "\n"
	const golden = "testdata/saju_charts.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("cube rows differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
	}
}
