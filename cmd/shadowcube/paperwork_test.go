package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/internal/wiring"
)

// examples/paperwork, as shipped; the test replaces only the hosts.
const (
	paperworkDir        = "../../examples/paperwork/"
	paperworkCubeHost   = "http://paperwork-cube:8002"
	paperworkLegacyHost = "http://legacy-paperwork:8001"
)

// TestPaperworkExampleEndToEnd runs examples/paperwork — a second domain by
// configuration only — through tap, cdc, sync, shadow and compare: a legacy
// JSON document service over public.documents and its cube over the
// differently shaped cube.papers (the mapping copies identity columns and
// computes the others). The two services differ where the example's compare
// rules say they may — a request id and time of their own (ignore), sizes
// rounded differently (tolerance), tags and lists in another order
// (unordered) — and in one planted way: the cube's document answer counts
// one page more for ids divisible by 7. Exactly the planted reads mismatch,
// on $.pages only; uploads, edits and deletes are not replayed; sync never
// stops; reconcile is clean, sequences included.
func TestPaperworkExampleEndToEnd(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := testenv.Context(t, 5*time.Minute)
	legacyDB, cubeDB, storeDB := pg.NewDatabase(t), pg.NewDatabase(t), pg.NewDatabase(t)
	read := func(name string) string {
		b, err := os.ReadFile(paperworkDir + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, d := range []struct{ url, file string }{{legacyDB, "legacy.sql"}, {cubeDB, "cube.sql"}} {
		if _, err := testenv.Connect(t, d.url).Exec(ctx, read(d.file)); err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
	}
	legacyAPI := newPaperAPI(t, ctx, legacyDB, false)
	cubeAPI := newPaperAPI(t, ctx, cubeDB, true)
	rf := read("routes.yaml")
	if !strings.Contains(rf, paperworkCubeHost) || !strings.Contains(rf, paperworkLegacyHost) {
		t.Fatalf("routes.yaml no longer names %s and %s", paperworkCubeHost, paperworkLegacyHost)
	}
	rf = strings.ReplaceAll(strings.ReplaceAll(rf, paperworkCubeHost, cubeAPI.url), paperworkLegacyHost, legacyAPI.url)
	p := startE2E(t, e2eConfig{
		Slot: "paperwork", Target: "paperwork-cube", SourceURL: legacyDB, TargetURL: cubeDB, StoreURL: storeDB,
		Mapping: read("mapping.yaml"), Routes: rf, Upstreams: map[string]string{"paperwork": legacyAPI.url}, SequenceInterval: time.Second,
	})
	c := &e2eClient{t: t, ctx: ctx, base: p.taps["paperwork"]}

	// Phase 1: uploads, edits and deletes through the tap.
	owners := []string{"kim@example.com", "lee@example.com", "park@example.com"}
	types := []string{"Contract", "Invoice", "Letter"}
	var ids []int64
	for i := range 24 {
		var out struct{ ID int64 }
		doc := map[string]any{"owner": owners[i%3], "title": fmt.Sprintf("document %d", i), "type": types[i%3],
			"pages": 1 + i%9, "size_bytes": 1000 + i*7919, "tags": []string{"zeta", fmt.Sprintf("t%d", i%4), "alpha"}[:1+i%3]}
		if c.call(e2eRequest{Name: fmt.Sprintf("upload %d", i), Write: true}, http.MethodPost, "/api/documents", doc, &out, http.StatusCreated) {
			ids = append(ids, out.ID)
		}
	}
	if len(ids) != 24 {
		t.FailNow()
	}
	for _, id := range ids {
		if id%3 == 0 {
			c.call(e2eRequest{Name: fmt.Sprintf("edit %d", id), Write: true}, http.MethodPut, fmt.Sprintf("/api/documents/%d", id),
				map[string]any{"title": fmt.Sprintf("signed document %d", id), "tags": []string{"signed", "archive", "b"}}, nil)
		}
	}
	deleted := []int64{ids[4], ids[13]}
	for _, id := range deleted {
		c.call(e2eRequest{Name: fmt.Sprintf("delete %d", id), Write: true}, http.MethodDelete, fmt.Sprintf("/api/documents/%d", id), nil, nil, http.StatusNoContent)
	}
	writes := len(c.requests())

	// Phase 2: every document (deleted ones: 404 on both sides) and every
	// owner's list, twice, from four clients at once.
	var fns []func()
	for range 2 {
		for _, id := range ids {
			fns = append(fns, func() {
				r := e2eRequest{Name: fmt.Sprintf("GET document %d", id), Key: id}
				if slices.Contains(deleted, id) {
					c.call(r, http.MethodGet, fmt.Sprintf("/api/documents/%d", id), nil, nil, http.StatusNotFound)
				} else {
					c.call(r, http.MethodGet, fmt.Sprintf("/api/documents/%d", id), nil, nil)
				}
			})
		}
		for _, o := range append(owners, "") {
			fns = append(fns, func() {
				c.call(e2eRequest{Name: fmt.Sprintf("GET list of %q", o)}, http.MethodGet, "/api/documents?owner="+o, nil, nil)
			})
		}
	}
	parallel(4, fns)
	if t.Failed() {
		t.FailNow()
	}
	all := c.requests()
	t.Logf("sent %d writes and %d reads through the tap", writes, len(all)-writes)

	// The rules have work to do: asked directly, legacy and cube answer
	// differently in the ignored, tolerated and unordered fields.
	var la, ca struct {
		RequestID string   `json:"request_id"`
		SizeKB    float64  `json:"size_kb"`
		Tags      []string `json:"tags"`
	}
	p.waitAllStored(int64(len(all)), 3*time.Minute)
	direct := &e2eClient{t: t, ctx: ctx}
	for _, s := range []struct {
		base string
		out  any
	}{{legacyAPI.url, &la}, {cubeAPI.url, &ca}} {
		direct.base = s.base
		direct.call(e2eRequest{Name: "direct GET " + s.base}, http.MethodGet, fmt.Sprintf("/api/documents/%d", ids[1]), nil, s.out)
	}
	if la.RequestID == ca.RequestID || la.SizeKB == ca.SizeKB || math.Abs(la.SizeKB-ca.SizeKB) > 0.005 || slices.Equal(la.Tags, ca.Tags) {
		t.Fatalf("legacy %+v and cube %+v should differ in request_id, size_kb (by at most 0.005) and tag order", la, ca)
	}

	p.checkSync(1, 1)
	for i := range all {
		if strings.HasPrefix(all[i].Name, "GET document") && all[i].Key%7 == 0 && !slices.Contains(deleted, all[i].Key) {
			all[i].Planted = "$.pages"
		}
	}
	planted := p.checkVerdicts(all)
	t.Logf("planted differences read: %d", planted)
	if n := cubeAPI.writes.Load(); n != 0 {
		t.Errorf("the cube received %d writes by replay", n)
	}
	if err := p.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("sync Run returned %v when stopped", err)
	}
}

// paperAPI is the document service: legacy over public.documents, or the
// cube over cube.papers. They answer the same JSON, except that each answer
// has its own request_id and generated_at, the cube rounds sizes to 0.01 KB,
// sorts tags and lists by title, and (planted) counts one page more in the
// document answer for ids divisible by 7.
type paperAPI struct {
	db     *pgxpool.Pool
	cube   bool
	url    string
	writes atomic.Int64
}

func newPaperAPI(t *testing.T, ctx context.Context, dbURL string, cube bool) *paperAPI {
	t.Helper()
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	a := &paperAPI{db: db, cube: cube}
	st := wiring.NewGroup(context.Background())
	t.Cleanup(func() { st.Stop() })
	if a.url, err = st.ServeLoopback(a); err != nil {
		t.Fatal(err)
	}
	return a
}

type paperDoc struct {
	ID        int64     `json:"id"`
	Owner     string    `json:"owner"`
	Title     string    `json:"title"`
	Type      string    `json:"type"`
	Pages     int       `json:"pages"`
	SizeKB    float64   `json:"size_kb"`
	Tags      []string  `json:"tags"`
	CreatedAt time.Time `json:"created_at"`
}

func (a *paperAPI) query() string {
	if a.cube {
		return `SELECT id, owner, title, kind, pages, size_kb::float8, ARRAY(SELECT jsonb_array_elements_text(tags) ORDER BY 1), created_at FROM cube.papers`
	}
	return `SELECT id, owner_email, title, lower(doc_type), pages, size_bytes / 1024.0::float8, tags, created_at FROM public.documents`
}

func (a *paperAPI) scan(rows pgx.CollectableRow) (paperDoc, error) {
	var d paperDoc
	err := rows.Scan(&d.ID, &d.Owner, &d.Title, &d.Type, &d.Pages, &d.SizeKB, &d.Tags, &d.CreatedAt)
	return d, err
}

func (a *paperAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v map[string]any) {
		v["request_id"], v["generated_at"] = randomID(), time.Now().UTC()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	fail := func(status int, err error) { reply(status, map[string]any{"error": err.Error()}) }
	rest, _ := strings.CutPrefix(r.URL.Path, "/api/documents")
	var id int64
	if rest != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(rest, "/"), 10, 64)
		if err != nil || !strings.HasPrefix(rest, "/") {
			fail(http.StatusNotFound, errors.New("not found"))
			return
		}
		id = n
	}
	if r.Method != http.MethodGet {
		a.writes.Add(1)
		if a.cube {
			fail(http.StatusForbidden, errors.New("the cube takes no writes in this test"))
			return
		}
	}
	ctx := r.Context()
	switch {
	case r.Method == http.MethodGet && id == 0:
		q, args := a.query(), []any{}
		if o := r.URL.Query().Get("owner"); o != "" {
			col := "owner_email"
			if a.cube {
				col = "owner"
			}
			q, args = q+" WHERE "+col+" = $1", append(args, o)
		}
		if a.cube {
			q += " ORDER BY title"
		} else {
			q += " ORDER BY id"
		}
		rows, err := a.db.Query(ctx, q, args...)
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		items, err := pgx.CollectRows(rows, a.scan)
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		reply(http.StatusOK, map[string]any{"items": items, "count": len(items)})
	case r.Method == http.MethodGet:
		rows, err := a.db.Query(ctx, a.query()+" WHERE id = $1", id)
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		d, err := pgx.CollectExactlyOneRow(rows, a.scan)
		if errors.Is(err, pgx.ErrNoRows) {
			fail(http.StatusNotFound, errors.New("not found"))
			return
		}
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		if a.cube && d.ID%7 == 0 {
			d.Pages++ // the planted difference
		}
		b, _ := json.Marshal(d)
		var v map[string]any
		json.Unmarshal(b, &v)
		reply(http.StatusOK, v)
	case r.Method == http.MethodPost && id == 0:
		var in struct {
			Owner, Title, Type string
			Pages              int
			SizeBytes          int64 `json:"size_bytes"`
			Tags               []string
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			fail(http.StatusBadRequest, err)
			return
		}
		var newID int64
		err := a.db.QueryRow(ctx, `INSERT INTO documents (owner_email, title, doc_type, pages, size_bytes, tags) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			in.Owner, in.Title, in.Type, in.Pages, in.SizeBytes, in.Tags).Scan(&newID)
		if err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		reply(http.StatusCreated, map[string]any{"id": newID})
	case r.Method == http.MethodPut && id != 0:
		var in struct {
			Title string
			Tags  []string
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			fail(http.StatusBadRequest, err)
			return
		}
		if _, err := a.db.Exec(ctx, `UPDATE documents SET title = $2, tags = $3 WHERE id = $1`, id, in.Title, in.Tags); err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		reply(http.StatusOK, map[string]any{"id": id})
	case r.Method == http.MethodDelete && id != 0:
		if _, err := a.db.Exec(ctx, `DELETE FROM documents WHERE id = $1`, id); err != nil {
			fail(http.StatusInternalServerError, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(http.StatusMethodNotAllowed, fmt.Errorf("%s %s", r.Method, r.URL.Path))
	}
}
