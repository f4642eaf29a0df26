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
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/internal/wiring"
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
//   - no write reaches the cube by replay: each mutation (those carrying an
//     Idempotency-Key too) is stored as skipped (reason write) and the cube
//     counted no mutation;
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
	c := &gqlClient{e2eClient{t: t, ctx: ctx, base: p.taps["blog"]}}

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
	writes := len(c.requests())

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
	var fns []func()
	for _, r := range reads {
		fns = append(fns, func() { c.do(r.op, r.doc, r.vars, false) })
	}
	parallel(4, fns)
	if t.Failed() {
		t.FailNow()
	}
	all := c.requests()
	t.Logf("sent %d writes and %d reads through the tap", writes, len(all)-writes)

	// Every request gets a result: compared, or skipped by policy.
	p.waitAllStored(int64(len(all)), 3*time.Minute)

	// Sync caught up, never stopped, dead-lettered nothing; reconcile is
	// clean, sequences included.
	p.checkSync(3, 3)

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
		unchangedBody, testenv.MetricSum(p.t, p.reg, "shadowcube_sync_reselected_rows_total"))

	// No trace in the application's schema: cdc's heartbeat lives elsewhere.
	var userTables []string
	if err := legacy.QueryRow(ctx, `SELECT coalesce(array_agg(table_name::text ORDER BY table_name), '{}') FROM information_schema.tables
		WHERE table_schema = 'public'`).Scan(&userTables); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(userTables, []string{"authors", "comments", "posts"}) {
		t.Errorf("legacy schema public holds %v; shadowcube must add nothing there", userTables)
	}

	// The store: one result per request; mutations skipped by policy,
	// queries compared under their operation; the planted difference, and
	// only it, reported.
	for i := range all {
		if all[i].Operation == "GetPost" && all[i].Key%5 == 0 && !slices.Contains(deleted, all[i].Key) {
			all[i].Planted = "$.data.post.title"
		}
	}
	planted := p.checkVerdicts(all)
	t.Logf("planted differences read: %d", planted)
	// shadow's metrics say the same: writes skipped by policy, and each
	// planted read confirmed by asking legacy again (it still differs).
	if n := testenv.MetricSum(p.t, p.reg, "shadowcube_shadow_skipped_total", "reason", "write"); n != float64(writes) {
		t.Errorf("shadowcube_shadow_skipped_total{reason=write} = %v, %d mutations were sent", n, writes)
	}
	if n := testenv.MetricSum(p.t, p.reg, "shadowcube_shadow_legacy_rechecks_total", "outcome", "differs"); n != float64(planted) {
		t.Errorf("shadowcube_shadow_legacy_rechecks_total{outcome=differs} = %v, %d planted reads", n, planted)
	}

	// No write reached the cube by replay; the cube answered every read.
	if n := cubeAPI.mutations.Load(); n != 0 {
		t.Errorf("the cube received %d mutations by replay", n)
	}
	if n := cubeAPI.queries.Load(); n < int64(len(all)-writes) {
		t.Errorf("the cube answered %d queries, %d reads were sent", n, len(all)-writes)
	}

	// Sync never stopped: its Run returns only now, when stopped.
	if err := p.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("sync Run returned %v when stopped", err)
	}

	// After cutover the cube creates rows with its own default keys: no
	// collision with a synced key in any of the three tables.
	cc := &gqlClient{e2eClient{t: t, ctx: ctx, base: cubeAPI.url}}
	aid := jsonInt(t, cc.do("CreateAuthor", mCreateAuthor, map[string]any{"name": "after cutover"}, true), "createAuthor", "id")
	pid := jsonInt(t, cc.do("CreatePost", mCreatePost, map[string]any{"authorId": aid, "title": "first cube post", "body": bigBody()}, true), "createPost", "id")
	cid := jsonInt(t, cc.do("AddComment", mAddComment, map[string]any{"postId": pid, "text": "first cube comment"}, true), "addComment", "id")
	if aid <= slices.Max(authors) || pid <= slices.Max(posts) {
		t.Errorf("cube keys after cutover: author %d, post %d; synced up to %d and %d", aid, pid, slices.Max(authors), slices.Max(posts))
	}
	t.Logf("cube created author %d, post %d, comment %d after cutover", aid, pid, cid)
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

// gqlClient sends GraphQL operations to /graphql.
type gqlClient struct{ e2eClient }

// do sends one operation; a transport error, a status other than 200 or a
// GraphQL error fails the test. It returns the answer's data.
func (c *gqlClient) do(op, doc string, vars map[string]any, write bool) map[string]any {
	c.t.Helper()
	var args []string
	for k, v := range vars {
		if k != "body" {
			args = append(args, fmt.Sprintf("%s=%v", k, v))
		}
	}
	slices.Sort(args)
	key, _ := vars["id"].(int64)
	r := e2eRequest{Name: fmt.Sprintf("%s(%s)", op, strings.Join(args, ", ")), Operation: op, Key: key, Write: write}
	if op == "CreateAuthor" {
		// A retry-safe write is still a write: not replayed either.
		r.Header = http.Header{"Idempotency-Key": {randomID()}}
	}
	var out struct {
		Data   map[string]any `json:"data"`
		Errors []any          `json:"errors"`
	}
	if !c.call(r, http.MethodPost, "/graphql", map[string]any{"query": doc, "operationName": op, "variables": vars}, &out) {
		return nil
	}
	if len(out.Errors) > 0 {
		c.t.Errorf("%s: errors %v", r.Name, out.Errors)
	}
	return out.Data
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
	st := wiring.NewGroup(context.Background())
	t.Cleanup(func() { st.Stop() })
	if a.url, err = st.ServeLoopback(a); err != nil {
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
