package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestAppSchemaEndToEnd is issue 17's "done when": an application-shaped
// schema (parent and child tables with foreign keys, a NOT NULL TOASTed
// text column with a CHECK and a DEFAULT beside it, identity and bigserial
// keys) behind a single-endpoint GraphQL API carrying reads and writes, run
// through tap, cdc, sync, shadow and compare. The cube database is owned by
// an ordinary role, so sync applies with the foreign keys enforced (and
// says so at start-up). It proves:
//   - sync never stops (Run returns only when stopped; no dead letter), also
//     on updates that leave the TOASTed body unchanged;
//   - reconcile finds no difference, sequences included, and a row created
//     on the cube afterwards with default keys does not collide;
//   - every read has exactly one compared pair, judged under its operation;
//   - no write reaches the cube by replay: each mutation is stored as
//     skipped (reason write) and the cube counted no mutation;
//   - the planted difference (GetPost upper-cases titles of posts whose id
//     is divisible by 5 on the cube) is reported for exactly those reads,
//     on exactly that field, and nothing else is.
func TestAppSchemaEndToEnd(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := testenv.Context(t, 5*time.Minute)
	legacyDB, cubeDB, storeDB := pg.NewDatabase(t), pg.NewDatabase(t), pg.NewDatabase(t)
	ddl, err := os.ReadFile("testdata/appschema/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{legacyDB, cubeDB} {
		if _, err := testenv.Connect(t, u).Exec(ctx, string(ddl)); err != nil {
			t.Fatalf("schema: %v", err)
		}
	}
	cubeAsOwner := ownerRole(t, pg, cubeDB, "public.authors", "public.posts", "public.comments")

	// Rows that exist before cdc starts: the initial copy carries them
	// (children must not arrive before their parents).
	legacy := testenv.Connect(t, legacyDB)
	for a := 1; a <= 3; a++ {
		var aid int
		if err := legacy.QueryRow(ctx, `INSERT INTO authors (name) VALUES ($1) RETURNING id`, fmt.Sprintf("seed author %d", a)).Scan(&aid); err != nil {
			t.Fatal(err)
		}
		for p := 1; p <= 2; p++ {
			var pid int
			if err := legacy.QueryRow(ctx, `INSERT INTO posts (author_id, title, body) VALUES ($1, $2, $3) RETURNING id`,
				aid, fmt.Sprintf("seed post %d of author %d", p, a), bigBody()).Scan(&pid); err != nil {
				t.Fatal(err)
			}
			if _, err := legacy.Exec(ctx, `INSERT INTO comments (post_id, text) VALUES ($1, 'first'), ($1, 'second')`, pid); err != nil {
				t.Fatal(err)
			}
		}
	}

	legacyAPI := newBlogAPI(t, ctx, legacyDB, false)
	cubeAPI := newBlogAPI(t, ctx, cubeAsOwner, true)
	mapping, err := os.ReadFile("testdata/appschema/mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	routesTmpl, err := os.ReadFile("testdata/appschema/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := startE2E(t, e2eConfig{
		Slot: "appschema", Target: "blog-cube", SourceURL: legacyDB, TargetURL: cubeAsOwner, StoreURL: storeDB,
		Mapping: string(mapping), Routes: fmt.Sprintf(string(routesTmpl), cubeAPI.url, legacyAPI.url),
		Upstreams: map[string]string{"blog": legacyAPI.url}, SequenceInterval: time.Second,
	})
	if !strings.Contains(p.logs.String(), "applying with foreign keys enforced") {
		t.Fatalf("sync's start-up log does not say how foreign keys are applied:\n%s", p.logs.String())
	}
	endpoint := p.taps["blog"] + "/graphql"
	c := &gqlClient{t: t, ctx: ctx, url: endpoint}

	// Phase 1: writes through the tap.
	authors := []int64{1, 2, 3}
	for i := range 4 {
		d := c.do("CreateAuthor", mCreateAuthor, map[string]any{"name": fmt.Sprintf("author %d", i)}, true)
		authors = append(authors, jsonInt(t, d, "createAuthor", "id"))
	}
	posts := []int64{1, 2, 3, 4, 5, 6}
	for i := range 14 {
		d := c.do("CreatePost", mCreatePost, map[string]any{"authorId": authors[i%len(authors)], "title": fmt.Sprintf("post number %d", i), "body": bigBody()}, true)
		posts = append(posts, jsonInt(t, d, "createPost", "id"))
	}
	for round := range 2 {
		for _, id := range posts {
			c.do("AddView", mAddView, map[string]any{"id": id}, true) // body unchanged: NOT NULL TOAST value not sent
			if round == 0 && id%3 == 0 {
				c.do("AddComment", mAddComment, map[string]any{"postId": id, "text": fmt.Sprintf("comment on %d", id)}, true)
			}
		}
	}
	for _, id := range posts {
		if id%4 == 1 {
			c.do("RenameTitle", mRenameTitle, map[string]any{"id": id, "title": fmt.Sprintf("renamed post %d", id)}, true)
		}
	}
	deleted := []int64{posts[3], posts[9]} // one seeded (with comments), one new
	for _, id := range deleted {
		d := c.do("DeletePost", mDeletePost, map[string]any{"id": id}, true)
		if d["deletePost"].(map[string]any)["deleted"] != true {
			t.Fatalf("DeletePost %d: %v", id, d)
		}
	}
	writes := c.sent()

	// Phase 2: reads of every post (deleted ones too), author and list,
	// each twice, from four clients at once.
	type read struct {
		op, doc string
		vars    map[string]any
	}
	var reads []read
	for range 2 {
		for _, id := range posts {
			reads = append(reads, read{"GetPost", qGetPost, map[string]any{"id": id}})
		}
		for _, id := range authors {
			reads = append(reads, read{"GetAuthor", qGetAuthor, map[string]any{"id": id}})
		}
		reads = append(reads, read{"ListPosts", qListPosts, nil})
	}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(reads)); i = next.Add(1) - 1 {
				r := reads[i]
				c.do(r.op, r.doc, r.vars, false)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	all := c.sent()
	t.Logf("sent %d writes and %d reads through the tap", len(writes), len(all)-len(writes))

	// Every request gets a result: compared, or skipped by policy.
	p.waitAllStored(int64(len(all)), 3*time.Minute)

	// Sync: caught up, never stopped, no dead letter.
	p.waitCaughtUp(time.Minute)
	if dl := p.deadLetters(); len(dl) > 0 {
		t.Errorf("sync dead letters: %v", dl)
	}
	if n := p.metric("shadowcube_sync_dlq_total", nil); n != 0 {
		t.Errorf("shadowcube_sync_dlq_total = %v", n)
	}
	// The updates of views and titles really left the TOASTed body out of
	// the change events (the case that stopped sync before).
	unchangedBody := 0
	for _, ev := range p.cdcEvents() {
		if ev.Table == "posts" && ev.Op == schemas.OpUpdate && slices.Contains(ev.Unchanged, "body") {
			unchangedBody++
		}
	}
	if unchangedBody < len(posts) {
		t.Errorf("only %d post updates left the body unchanged in the CDC stream; the test lost its TOAST case", unchangedBody)
	}
	t.Logf("post updates with the body unchanged: %d; rows re-read from the source: %v",
		unchangedBody, p.metric("shadowcube_sync_reselected_rows_total", nil))

	// No trace in the application's schema: cdc's heartbeat lives elsewhere.
	var userTables []string
	if err := legacy.QueryRow(ctx, `SELECT coalesce(array_agg(table_name::text ORDER BY table_name), '{}') FROM information_schema.tables
		WHERE table_schema = 'public'`).Scan(&userTables); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(userTables, []string{"authors", "comments", "posts"}) {
		t.Errorf("legacy schema public holds %v; shadowcube must add nothing there", userTables)
	}

	// Sequences: a periodic pass that started after sync caught up moved
	// them; then reconcile is clean, sequences included.
	passes := p.metric("shadowcube_sync_sequence_passes_total", map[string]string{"reason": "interval"})
	p.waitFor(time.Minute, func() string { return "two sequence passes after catching up" }, func() bool {
		return p.metric("shadowcube_sync_sequence_passes_total", map[string]string{"reason": "interval"}) >= passes+2
	})
	reps := p.reconcile()
	seqs := 0
	for _, r := range reps {
		t.Logf("reconcile %s: source rows %d, target rows %d, differences %d", r.Table, r.SourceRows, r.TargetRows, r.Differences)
		if r.Differences != 0 || r.SourceRows != r.TargetRows {
			b, _ := json.Marshal(r.Diffs)
			t.Errorf("reconcile %s: %d differences: %s", r.Table, r.Differences, truncate(string(b), 1000))
		}
		for _, s := range r.Sequences {
			seqs++
			b, _ := json.Marshal(s)
			t.Logf("reconcile %s: sequence %s", r.Table, b)
			if s.Behind || s.Error != "" || s.Skipped != "" {
				t.Errorf("reconcile %s: sequence %s", r.Table, b)
			}
		}
	}
	if len(reps) != 3 || seqs != 3 {
		t.Errorf("reconcile covered %d tables and %d sequences, want 3 and 3", len(reps), seqs)
	}

	// The store: one result per request, judged under its operation.
	byID := map[string]storedResult{}
	rows, err := p.storeConn().Query(ctx, fmt.Sprintf(`SELECT request_id, verdict, coalesce(operation, ''), coalesce(skipped, ''), causes, diffs::text, stale, coalesce(cube_error, '')
		FROM %s.pairs`, p.store.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r storedResult
		if err := rows.Scan(&r.id, &r.verdict, &r.op, &r.skipped, &r.causes, &r.diffs, &r.stale, &r.cubeErr); err != nil {
			t.Fatal(err)
		}
		if _, dup := byID[r.id]; dup {
			t.Errorf("request %s has more than one result", r.id)
		}
		byID[r.id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(byID) != len(all) {
		t.Errorf("store holds results of %d requests, %d were sent", len(byID), len(all))
	}
	planted, mismatches := 0, 0
	for _, s := range all {
		r, ok := byID[s.captureID]
		if !ok {
			t.Errorf("%s: no result", s)
			continue
		}
		if r.op != s.op {
			t.Errorf("%s: stored under operation %q", s, r.op)
		}
		if s.write {
			if r.verdict != "skipped" || r.skipped != "write" {
				t.Errorf("mutation %s: verdict %s, skipped %q; want skipped (write)", s, r.verdict, r.skipped)
			}
			continue
		}
		if r.stale || r.cubeErr != "" {
			t.Errorf("read %s: stale %v, cube error %q", s, r.stale, r.cubeErr)
		}
		id, _ := s.vars["id"].(int64)
		want := "match"
		if s.op == "GetPost" && id%5 == 0 && !slices.Contains(deleted, id) {
			want = "mismatch"
			planted++
		}
		if r.verdict == "mismatch" {
			mismatches++
		}
		if r.verdict != want {
			t.Errorf("read %s: verdict %s (causes %v, diffs %s); want %s", s, r.verdict, r.causes, truncate(r.diffs, 300), want)
			continue
		}
		if want == "mismatch" {
			var diffs []struct{ Path string }
			if err := json.Unmarshal([]byte(r.diffs), &diffs); err != nil || len(diffs) != 1 || diffs[0].Path != "$.data.post.title" {
				t.Errorf("planted GetPost %d: diffs %s, want one at $.data.post.title", id, r.diffs)
			}
		}
	}
	if planted == 0 {
		t.Fatal("no planted difference was read: the test proves nothing about reporting")
	}
	t.Logf("planted differences read %d, mismatches stored %d", planted, mismatches)

	// The summary a user reads says the same.
	sum, err := p.store.Summary(ctx, 20, comparator.AIConfig{}, comparator.NoiseConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var skippedWrites int64
	for _, k := range sum.Skipped {
		if k.Reason != "write" {
			t.Errorf("skipped for reason %q: %+v", k.Reason, k)
		}
		skippedWrites += k.Count
	}
	if skippedWrites != int64(len(writes)) {
		t.Errorf("summary counts %d writes skipped, %d were sent", skippedWrites, len(writes))
	}
	for _, r := range sum.Routes {
		wantMis := int64(0)
		if r.Operation == "GetPost" {
			wantMis = int64(planted)
		}
		if r.Mismatches != wantMis || r.Errors != 0 || r.Stale != 0 || r.MovedOn != 0 {
			t.Errorf("summary %s %s: %+v; want %d mismatches, no error, stale or moved-on", r.Route, r.Operation, r, wantMis)
		}
	}
	if len(sum.Signatures) != 1 || sum.Signatures[0].Count != int64(planted) {
		t.Errorf("signatures %+v; want one, of the %d planted GetPost titles", sum.Signatures, planted)
	}

	// No write reached the cube by replay; the cube answered every read.
	if n := cubeAPI.mutations.Load(); n != 0 {
		t.Errorf("the cube received %d mutations by replay", n)
	}
	if n := cubeAPI.queries.Load(); n < int64(len(all)-len(writes)) {
		t.Errorf("the cube answered %d queries, %d reads were sent", n, len(all)-len(writes))
	}

	// Sync never stopped: its Run returns only now, when stopped.
	if err := p.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("sync Run returned %v when stopped", err)
	}

	// After cutover the cube creates rows with its own default keys: no
	// collision with a synced key in any of the three tables.
	cc := &gqlClient{t: t, ctx: ctx, url: cubeAPI.url + "/graphql"}
	aid := jsonInt(t, cc.do("CreateAuthor", mCreateAuthor, map[string]any{"name": "after cutover"}, true), "createAuthor", "id")
	pid := jsonInt(t, cc.do("CreatePost", mCreatePost, map[string]any{"authorId": aid, "title": "first cube post", "body": bigBody()}, true), "createPost", "id")
	cid := jsonInt(t, cc.do("AddComment", mAddComment, map[string]any{"postId": pid, "text": "first cube comment"}, true), "addComment", "id")
	if aid <= slices.Max(authors) || pid <= slices.Max(posts) {
		t.Errorf("cube keys after cutover: author %d, post %d; synced up to %d and %d", aid, pid, slices.Max(authors), slices.Max(posts))
	}
	t.Logf("cube created author %d, post %d, comment %d after cutover", aid, pid, cid)
}

type storedResult struct {
	id, verdict, op, skipped, diffs, cubeErr string
	causes                                   []string
	stale                                    bool
}

// GraphQL documents of the blog API (operation name = the client's).
const (
	qGetPost      = `query GetPost($id: Int!) { post(id: $id) { id title body views author { id name } comments { id text } } }`
	qListPosts    = `query ListPosts { posts { id title views author { name } comments } }`
	qGetAuthor    = `query GetAuthor($id: Int!) { author(id: $id) { id name posts { id title } } }`
	mCreateAuthor = `mutation CreateAuthor($name: String!) { createAuthor(name: $name) { id name } }`
	mCreatePost   = `mutation CreatePost($authorId: Int!, $title: String!, $body: String!) { createPost(authorId: $authorId, title: $title, body: $body) { id } }`
	mAddView      = `mutation AddView($id: Int!) { addView(id: $id) { id views } }`
	mRenameTitle  = `mutation RenameTitle($id: Int!, $title: String!) { renameTitle(id: $id, title: $title) { id title } }`
	mAddComment   = `mutation AddComment($postId: Int!, $text: String!) { addComment(postId: $postId, text: $text) { id } }`
	mDeletePost   = `mutation DeletePost($id: Int!) { deletePost(id: $id) { id deleted } }`
)

// bigBody is a post body that PostgreSQL stores out of line: 16 KB that do
// not compress.
func bigBody() string {
	b := make([]byte, 12<<10)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// gqlClient sends GraphQL requests and remembers what it sent.
type gqlClient struct {
	t   *testing.T
	ctx context.Context
	url string
	mu  sync.Mutex
	log []sentRequest
}

type sentRequest struct {
	op, captureID string
	vars          map[string]any
	write         bool
}

// String names the request in messages (without the post body).
func (s sentRequest) String() string {
	var args []string
	for k, v := range s.vars {
		if k != "body" {
			args = append(args, fmt.Sprintf("%s=%v", k, v))
		}
	}
	slices.Sort(args)
	return fmt.Sprintf("%s(%s) capture %s", s.op, strings.Join(args, ", "), s.captureID)
}

// do sends one operation; it fails the test on a transport error, a status
// other than 200 or a GraphQL error, and returns the answer's data.
func (c *gqlClient) do(op, doc string, vars map[string]any, write bool) map[string]any {
	var out struct {
		Data   map[string]any `json:"data"`
		Errors []any          `json:"errors"`
	}
	id, status, err := postJSON(c.ctx, c.url, map[string]any{"query": doc, "operationName": op, "variables": vars}, &out)
	if err != nil || status != http.StatusOK || len(out.Errors) > 0 {
		c.t.Errorf("%s: status %d, errors %v, %v", sentRequest{op: op, vars: vars}, status, out.Errors, err)
		return nil
	}
	c.mu.Lock()
	c.log = append(c.log, sentRequest{op: op, captureID: id, vars: vars, write: write})
	c.mu.Unlock()
	return out.Data
}

func (c *gqlClient) sent() []sentRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

func jsonInt(t *testing.T, data map[string]any, field, key string) int64 {
	t.Helper()
	obj, _ := data[field].(map[string]any)
	f, ok := obj[key].(float64)
	if !ok {
		t.Fatalf("answer has no %s.%s: %v", field, key, data)
	}
	return int64(f)
}

// blogAPI is the application under test: one POST /graphql endpoint over
// the blog schema, dispatching on the parsed operation. The cube instance
// (plant) upper-cases GetPost titles of posts whose id is divisible by 5.
type blogAPI struct {
	db                 *pgxpool.Pool
	plant              bool
	url                string
	queries, mutations atomic.Int64
}

func newBlogAPI(t *testing.T, ctx context.Context, dbURL string, plant bool) *blogAPI {
	t.Helper()
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	a := &blogAPI{db: db, plant: plant}
	st := &demoStack{}
	t.Cleanup(st.stop)
	if a.url, err = serveLoopback(st, a); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *blogAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/graphql" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var req struct {
		Query         string         `json:"query"`
		OperationName string         `json:"operationName"`
		Variables     map[string]any `json:"variables"`
	}
	fail := func(status int, err error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": err.Error()}}})
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	doc, gerr := parser.ParseQuery(&ast.Source{Input: req.Query})
	if gerr != nil {
		a.mutations.Add(1) // not known to be a read
		fail(http.StatusBadRequest, gerr)
		return
	}
	op := doc.Operations.ForName(req.OperationName)
	if op == nil {
		a.mutations.Add(1)
		fail(http.StatusBadRequest, fmt.Errorf("no operation %q", req.OperationName))
		return
	}
	if op.Operation == ast.Query {
		a.queries.Add(1)
	} else {
		a.mutations.Add(1)
	}
	data, err := a.resolve(r.Context(), op.Operation, op.Name, vars(req.Variables))
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"data": nil, "errors": []any{map[string]any{"message": err.Error()}}})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": data})
}

type vars map[string]any

func (v vars) int(k string) int64 {
	f, _ := v[k].(float64)
	return int64(f)
}

func (v vars) str(k string) string { s, _ := v[k].(string); return s }

func (a *blogAPI) resolve(ctx context.Context, typ ast.Operation, name string, v vars) (map[string]any, error) {
	switch {
	case typ == ast.Query && name == "GetPost":
		var id, views, aid int64
		var title, body, aname string
		err := a.db.QueryRow(ctx, `SELECT p.id, p.title, p.body, p.views, a.id, a.name FROM posts p JOIN authors a ON a.id = p.author_id WHERE p.id = $1`,
			v.int("id")).Scan(&id, &title, &body, &views, &aid, &aname)
		if errors.Is(err, pgx.ErrNoRows) {
			return map[string]any{"post": nil}, nil
		}
		if err != nil {
			return nil, err
		}
		if a.plant && id%5 == 0 {
			title = strings.ToUpper(title)
		}
		comments, err := a.list(ctx, `SELECT id, text FROM comments WHERE post_id = $1 ORDER BY id`, []string{"id", "text"}, id)
		if err != nil {
			return nil, err
		}
		return map[string]any{"post": map[string]any{"id": id, "title": title, "body": body, "views": views,
			"author": map[string]any{"id": aid, "name": aname}, "comments": comments}}, nil
	case typ == ast.Query && name == "ListPosts":
		posts, err := a.list(ctx, `SELECT p.id, p.title, p.views, a.name, (SELECT count(*) FROM comments c WHERE c.post_id = p.id)
			FROM posts p JOIN authors a ON a.id = p.author_id ORDER BY p.id`, []string{"id", "title", "views", "author", "comments"})
		return map[string]any{"posts": posts}, err
	case typ == ast.Query && name == "GetAuthor":
		var id int64
		var aname string
		err := a.db.QueryRow(ctx, `SELECT id, name FROM authors WHERE id = $1`, v.int("id")).Scan(&id, &aname)
		if errors.Is(err, pgx.ErrNoRows) {
			return map[string]any{"author": nil}, nil
		}
		if err != nil {
			return nil, err
		}
		posts, err := a.list(ctx, `SELECT id, title FROM posts WHERE author_id = $1 ORDER BY id`, []string{"id", "title"}, id)
		return map[string]any{"author": map[string]any{"id": id, "name": aname, "posts": posts}}, err
	case typ == ast.Mutation && name == "CreateAuthor":
		var id int64
		err := a.db.QueryRow(ctx, `INSERT INTO authors (name) VALUES ($1) RETURNING id`, v.str("name")).Scan(&id)
		return map[string]any{"createAuthor": map[string]any{"id": id, "name": v.str("name")}}, err
	case typ == ast.Mutation && name == "CreatePost":
		var id int64
		err := a.db.QueryRow(ctx, `INSERT INTO posts (author_id, title, body) VALUES ($1, $2, $3) RETURNING id`,
			v.int("authorId"), v.str("title"), v.str("body")).Scan(&id)
		return map[string]any{"createPost": map[string]any{"id": id}}, err
	case typ == ast.Mutation && name == "AddView":
		var views int64
		err := a.db.QueryRow(ctx, `UPDATE posts SET views = views + 1 WHERE id = $1 RETURNING views`, v.int("id")).Scan(&views)
		return map[string]any{"addView": map[string]any{"id": v.int("id"), "views": views}}, err
	case typ == ast.Mutation && name == "RenameTitle":
		var title string
		err := a.db.QueryRow(ctx, `UPDATE posts SET title = $2 WHERE id = $1 RETURNING title`, v.int("id"), v.str("title")).Scan(&title)
		return map[string]any{"renameTitle": map[string]any{"id": v.int("id"), "title": title}}, err
	case typ == ast.Mutation && name == "AddComment":
		var id int64
		err := a.db.QueryRow(ctx, `INSERT INTO comments (post_id, text) VALUES ($1, $2) RETURNING id`, v.int("postId"), v.str("text")).Scan(&id)
		return map[string]any{"addComment": map[string]any{"id": id}}, err
	case typ == ast.Mutation && name == "DeletePost":
		tag, err := a.db.Exec(ctx, `DELETE FROM posts WHERE id = $1`, v.int("id"))
		return map[string]any{"deletePost": map[string]any{"id": v.int("id"), "deleted": err == nil && tag.RowsAffected() == 1}}, err
	}
	return nil, fmt.Errorf("unknown %s %q", typ, name)
}

// list runs q and returns its rows as objects with the given field names.
func (a *blogAPI) list(ctx context.Context, q string, fields []string, args ...any) ([]any, error) {
	rows, err := a.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		obj := map[string]any{}
		for i, f := range fields {
			obj[f] = vals[i]
		}
		out = append(out, obj)
	}
	return out, rows.Err()
}
