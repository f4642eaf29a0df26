package consumers

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/internal/testenv"
)

// TestConnectionsPinSessionSettings: sync's and reconcile's connections
// print values the one pinned way (internal/pgsession) even when the URL asks
// for another time zone and date style.
func TestConnectionsPinSessionSettings(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	url := testenv.Postgres(t).NewDatabase(t)
	if strings.Contains(url, "?") {
		url += "&timezone=Asia/Seoul&datestyle=German"
	} else {
		url += "?timezone=Asia/Seoul&datestyle=German"
	}
	const q = `SELECT current_setting('TimeZone'), current_setting('DateStyle'), current_setting('IntervalStyle'),
		current_setting('bytea_output'), current_setting('extra_float_digits'), current_setting('client_encoding'),
		'2026-01-02 03:04:05+09'::timestamptz::text`
	check := func(name string, row pgx.Row) {
		var tz, ds, is, bo, efd, enc, ts string
		if err := row.Scan(&tz, &ds, &is, &bo, &efd, &enc, &ts); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tz != "UTC" || ds != "ISO, YMD" || is != "postgres" || bo != "hex" || efd != "3" || enc != "UTF8" || ts != "2026-01-01 18:04:05+00" {
			t.Errorf("%s: settings %q %q %q %q %q %q, timestamp %q", name, tz, ds, is, bo, efd, enc, ts)
		}
	}
	conn, err := ConnectSource(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	check("ConnectSource", conn.QueryRow(ctx, q))
	pool, err := OpenTargetPool(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	check("OpenTargetPool", pool.QueryRow(ctx, q))
	// The URL's settings do reach the server: without the pinning the time
	// zone would be the URL's.
	plain, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	var tz string
	if err := plain.QueryRow(ctx, "SELECT current_setting('TimeZone')").Scan(&tz); err != nil || tz != "Asia/Seoul" {
		t.Fatalf("unpinned connection: TimeZone %q, %v; the URL's setting did not take, so this test proves nothing", tz, err)
	}
}
