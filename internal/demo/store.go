package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound means no stored chart has the requested id (answer 404).
var ErrNotFound = errors.New("chart not found")

// StoredChart is a chart record as either database holds it.
type StoredChart struct {
	ID                  int64
	UserID              string
	Year, Month, Day    int
	Hour                *int
	Solar               bool
	YearP, MonthP, DayP string
	HourP               *string
	Interpretation      string
	CreatedAt           time.Time
}

// chartStore is where a saju service keeps its charts.
type chartStore interface {
	ensureSchema(ctx context.Context) error
	insert(ctx context.Context, r StoredChart) (int64, error)
	get(ctx context.Context, id int64) (StoredChart, error)
}

// LegacySchema creates the legacy table saju_records (flat columns).
const LegacySchema = `CREATE TABLE IF NOT EXISTS saju_records (
	id bigserial PRIMARY KEY,
	user_id text,
	birth_year int,
	birth_month int,
	birth_day int,
	birth_hour int NULL,
	is_solar bool,
	year_pillar text,
	month_pillar text,
	day_pillar text,
	hour_pillar text NULL,
	interpretation text,
	created_at timestamptz DEFAULT now()
)`

// CubeSchema creates the cube's own schema. Rows synced from legacy keep the
// legacy id; rows the cube writes itself take ids from cube.saju_charts_own_id,
// which starts at CubeOwnIDStart so the two never collide.
const CubeSchema = `CREATE SCHEMA IF NOT EXISTS cube;
CREATE TABLE IF NOT EXISTS cube.saju_charts (
	id bigint PRIMARY KEY,
	user_id text,
	birth_info jsonb,
	saju_chart jsonb,
	interpretation text,
	created_at timestamptz
);
CREATE SEQUENCE IF NOT EXISTS cube.saju_charts_own_id START 1000000000000`

// CubeOwnIDStart is the first id the cube gives its own rows.
const CubeOwnIDStart = 1_000_000_000_000

type legacyStore struct{ db *pgxpool.Pool }

func (s legacyStore) ensureSchema(ctx context.Context) error {
	if _, err := s.db.Exec(ctx, LegacySchema); err != nil {
		return fmt.Errorf("create saju_records: %w", err)
	}
	return nil
}

func (s legacyStore) insert(ctx context.Context, r StoredChart) (int64, error) {
	var id int64
	err := s.db.QueryRow(ctx, `INSERT INTO saju_records
		(user_id, birth_year, birth_month, birth_day, birth_hour, is_solar, year_pillar, month_pillar, day_pillar, hour_pillar, interpretation)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING id`,
		r.UserID, r.Year, r.Month, r.Day, r.Hour, r.Solar, r.YearP, r.MonthP, r.DayP, r.HourP, r.Interpretation).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert saju_records: %w", err)
	}
	return id, nil
}

func (s legacyStore) get(ctx context.Context, id int64) (StoredChart, error) {
	r := StoredChart{ID: id}
	var user *string
	var interp *string
	var solar *bool
	err := s.db.QueryRow(ctx, `SELECT user_id, birth_year, birth_month, birth_day, birth_hour, is_solar,
		year_pillar, month_pillar, day_pillar, hour_pillar, interpretation, created_at
		FROM saju_records WHERE id = $1`, id).Scan(&user, &r.Year, &r.Month, &r.Day, &r.Hour, &solar,
		&r.YearP, &r.MonthP, &r.DayP, &r.HourP, &interp, &r.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read saju_records id %d: %w", id, err)
	}
	r.UserID, r.Interpretation = deref(user), deref(interp)
	r.Solar = solar == nil || *solar
	return r, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type cubeStore struct{ db *pgxpool.Pool }

// cubeBirthInfo and cubeChartJSON are the jsonb shapes of the mapping
// (consumers' mapping file): jsonb_build_object over the legacy columns.
type cubeBirthInfo struct {
	Year          int  `json:"year"`
	Month         int  `json:"month"`
	Day           int  `json:"day"`
	Hour          *int `json:"hour"`
	SolarCalendar bool `json:"solar_calendar"`
}

type cubeChartJSON struct {
	YearPillar  string  `json:"year_pillar"`
	MonthPillar string  `json:"month_pillar"`
	DayPillar   string  `json:"day_pillar"`
	HourPillar  *string `json:"hour_pillar"`
}

func (s cubeStore) ensureSchema(ctx context.Context) error {
	if _, err := s.db.Exec(ctx, CubeSchema); err != nil {
		return fmt.Errorf("create cube.saju_charts: %w", err)
	}
	return nil
}

func (s cubeStore) insert(ctx context.Context, r StoredChart) (int64, error) {
	bi, err := json.Marshal(cubeBirthInfo{r.Year, r.Month, r.Day, r.Hour, r.Solar})
	if err != nil {
		return 0, err
	}
	sc, err := json.Marshal(cubeChartJSON{r.YearP, r.MonthP, r.DayP, r.HourP})
	if err != nil {
		return 0, err
	}
	var id int64
	err = s.db.QueryRow(ctx, `INSERT INTO cube.saju_charts (id, user_id, birth_info, saju_chart, interpretation, created_at)
		VALUES (nextval('cube.saju_charts_own_id'), $1, $2, $3, $4, now()) RETURNING id`,
		r.UserID, string(bi), string(sc), r.Interpretation).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert cube.saju_charts: %w", err)
	}
	return id, nil
}

func (s cubeStore) get(ctx context.Context, id int64) (StoredChart, error) {
	r := StoredChart{ID: id}
	var user, interp *string
	var bi, sc []byte
	var created *time.Time
	err := s.db.QueryRow(ctx, `SELECT user_id, birth_info, saju_chart, interpretation, created_at
		FROM cube.saju_charts WHERE id = $1`, id).Scan(&user, &bi, &sc, &interp, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read cube.saju_charts id %d: %w", id, err)
	}
	var b cubeBirthInfo
	var c cubeChartJSON
	if err := json.Unmarshal(bi, &b); err != nil {
		return r, fmt.Errorf("cube.saju_charts id %d: birth_info: %w", id, err)
	}
	if err := json.Unmarshal(sc, &c); err != nil {
		return r, fmt.Errorf("cube.saju_charts id %d: saju_chart: %w", id, err)
	}
	r.UserID, r.Interpretation = deref(user), deref(interp)
	r.Year, r.Month, r.Day, r.Hour, r.Solar = b.Year, b.Month, b.Day, b.Hour, b.SolarCalendar
	r.YearP, r.MonthP, r.DayP, r.HourP = c.YearPillar, c.MonthPillar, c.DayPillar, c.HourPillar
	if created != nil {
		r.CreatedAt = *created
	}
	return r, nil
}
