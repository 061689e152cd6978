package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

// restClient bounds every REST request of these tests.
var restClient = &http.Client{Timeout: testenv.Timeout}

type restResp struct {
	status int
	body   []byte
}

// restDo sends a REST request to srv; a non-empty body goes as application/json
// unless ctype says otherwise.
func restDo(t *testing.T, srv *testenv.Server, method, path, ctype, body string) restResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
		if ctype == "" {
			ctype = "application/json"
		}
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := restClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return restResp{resp.StatusCode, b}
}

// restOK is restDo failing the test unless the status is want; it returns the body as
// a JSON object.
func restOK(t *testing.T, srv *testenv.Server, want int, method, path, body string) map[string]json.RawMessage {
	t.Helper()
	r := restDo(t, srv, method, path, "", body)
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return obj(t, r.body)
}

func restSeq(t *testing.T, m map[string]json.RawMessage) int64 {
	t.Helper()
	n, err := strconv.ParseInt(string(m["seq"]), 10, 64)
	if err != nil {
		t.Fatalf("seq %s: %v", m["seq"], err)
	}
	return n
}

// restCanon is the canonical text of a JSON value (sorted keys, numbers as written).
func restCanon(t *testing.T, raw []byte) string {
	t.Helper()
	b, err := json.Marshal(canon(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRESTReadYourWrites: the seq a REST write returns is the seq of the change a
// WebSocket subscriber receives for it, with the same row image; when a user trigger
// makes several changes, it is the last of them.
func TestRESTReadYourWrites(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, data BLOB, r REAL);
CREATE TABLE audit(id INTEGER PRIMARY KEY, what TEXT);
CREATE TABLE logged(id INTEGER PRIMARY KEY, v TEXT);
CREATE TRIGGER logged_ins AFTER INSERT ON logged BEGIN INSERT INTO audit(what) VALUES ('ins ' || NEW.id); END;`)
	c := srv.Dial(t)
	c.Subscribe("a", nil, nil, "")

	m := restOK(t, srv, 201, "POST", "/api/tables/todos/rows",
		`{"title":"milk","data":{"$blob":"00ff"},"r":{"$real":"Infinity"}}`)
	seq := restSeq(t, m)
	got := c.WaitSeq("a", seq, timeout)
	last := got[len(got)-1]
	if last.Seq != seq || last.Op != models.OpInsert || last.Table != "todos" {
		t.Fatalf("POST returned seq %d; the subscriber's change at that seq is %+v", seq, last)
	}
	if string(last.New) != string(m["row"]) {
		t.Fatalf("REST row %s differs from the change's new image %s", m["row"], last.New)
	}
	jsonEq(t, "row", m["row"], `{"id":1,"title":"milk","done":0,"data":{"$blob":"00FF"},"r":{"$real":"Infinity"}}`)

	m = restOK(t, srv, 200, "PATCH", "/api/tables/todos/rows/1", `{"done":true}`)
	seq = restSeq(t, m)
	last = c.WaitSeq("a", seq, timeout)[0]
	if last.Seq != seq || last.Op != models.OpUpdate || string(last.New) != string(m["row"]) {
		t.Fatalf("PATCH seq %d row %s; change %+v", seq, m["row"], last)
	}

	m = restOK(t, srv, 200, "DELETE", "/api/tables/todos/rows/1", "")
	seq = restSeq(t, m)
	last = c.WaitSeq("a", seq, timeout)[0]
	if last.Seq != seq || last.Op != models.OpDelete || string(last.PK) != `{"id":1}` {
		t.Fatalf("DELETE seq %d; change %+v", seq, last)
	}

	// A user trigger adds a change: the write reports the last one.
	m = restOK(t, srv, 201, "POST", "/api/tables/logged/rows", `{"v":"x"}`)
	seq = restSeq(t, m)
	got = c.WaitSeq("a", seq, timeout)
	if len(got) != 2 || got[0].Table != "logged" || got[1].Table != "audit" || got[1].Seq != seq {
		t.Fatalf("POST with a trigger returned seq %d; changes %+v", seq, got)
	}
	if n := testenv.SQLiteInt(t, db, "SELECT max(seq) FROM sqlws_changes;"); n != seq {
		t.Fatalf("head %d, POST said %d", n, seq)
	}
	expectMarker(t, c, "a", db, "audit", "id", seq+1)
}

// TestRESTSnapshotThenStream: load a table over REST, page by page, while sqlite3 CLI
// processes write to it; subscribe with the first page's seq and apply the stream on
// top. The client's copy converges to the table exactly.
func TestRESTSnapshotThenStream(t *testing.T) {
	t.Parallel()
	var schema strings.Builder
	schema.WriteString("CREATE TABLE items(id INTEGER PRIMARY KEY, v INTEGER, tag TEXT, b BLOB);\n")
	schema.WriteString("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300) INSERT INTO items SELECT i, i, 't' || (i % 7), NULL FROM c;\n")
	db, srv := start(t, schema.String())

	const writers, stmts = 3, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		var s strings.Builder
		for i := 0; i < stmts; i++ {
			id := 1 + (w*97+i*13)%300
			switch i % 5 {
			case 0:
				fmt.Fprintf(&s, "INSERT INTO items(v, tag, b) VALUES (%d, 'w%d', x'%02x');\n", i, w, i)
			case 1, 2:
				fmt.Fprintf(&s, "UPDATE items SET v = v + 1000, tag = 'u%d' WHERE id = %d;\n", w, id)
			case 3:
				fmt.Fprintf(&s, "BEGIN; UPDATE items SET v = -v WHERE id = %d; DELETE FROM items WHERE id = %d; COMMIT;\n", id, (id+150)%300+1)
			case 4:
				fmt.Fprintf(&s, "DELETE FROM items WHERE id = %d;\n", id)
			}
		}
		wg.Add(1)
		go func(script string) {
			defer wg.Done()
			if _, err := testenv.RunSQLite(db, script); err != nil {
				errs <- err
			}
		}(s.String())
	}

	state := map[string]string{}
	var since int64 = -1
	pageSeqs := map[int64]bool{}
	after := ""
	for page := 0; ; page++ {
		p := "/api/tables/items/rows?limit=20"
		if after != "" {
			p += "&after=" + url.QueryEscape(after)
		}
		r := restDo(t, srv, "GET", p, "", "")
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", p, r.status, r.body)
		}
		var pg struct {
			Rows []json.RawMessage `json:"rows"`
			Next *string           `json:"next"`
			Seq  int64             `json:"seq"`
		}
		if err := json.Unmarshal(r.body, &pg); err != nil {
			t.Fatal(err)
		}
		if since < 0 {
			since = pg.Seq
		}
		pageSeqs[pg.Seq] = true
		for _, row := range pg.Rows {
			state[string(obj(t, row)["id"])] = restCanon(t, row)
		}
		if pg.Next == nil {
			break
		}
		after = *pg.Next
		if page > 1000 {
			t.Fatal("pagination does not end")
		}
	}

	t.Logf("loaded at %d distinct seqs, from %d", len(pageSeqs), since)
	c := srv.Dial(t)
	c.Subscribe("s", []string{"items"}, testenv.Int64(since), "")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	head := testenv.SQLiteInt(t, db, "SELECT max(seq) FROM sqlws_changes;")
	if head <= since {
		t.Fatalf("the writers finished before the load started (head %d, since %d); the test proves nothing", head, since)
	}
	changes := c.WaitSeq("s", head, timeout)
	testenv.AssertContiguous(t, changes, since+1)
	for _, ch := range changes {
		id := string(obj(t, ch.PK)["id"])
		if ch.Op == models.OpDelete {
			delete(state, id)
		} else {
			state[id] = restCanon(t, ch.New)
		}
	}

	out := testenv.SQLite(t, db, "SELECT json_object('id', id, 'v', v, 'tag', tag, 'b', CASE WHEN b IS NULL THEN NULL ELSE json_object('$blob', hex(b)) END) FROM items ORDER BY id;")
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		want[string(obj(t, []byte(line))["id"])] = restCanon(t, []byte(line))
	}
	if len(state) != len(want) {
		t.Fatalf("client has %d rows, the table %d", len(state), len(want))
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if state[id] != want[id] {
			t.Fatalf("row %s: client %s, table %s", id, state[id], want[id])
		}
	}
}

// TestRESTSeesCLIWrites: a row the CLI writes is readable over REST at once, with a
// seq no lower than its change; a table the CLI creates is served once its triggers
// are installed.
func TestRESTSeesCLIWrites(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT);`)
	for i := 1; i <= 5; i++ {
		testenv.SQLite(t, db, fmt.Sprintf("INSERT INTO todos VALUES (%d, 'cli %d');", i, i))
		m := restOK(t, srv, 200, "GET", fmt.Sprintf("/api/tables/todos/rows/%d", i), "")
		jsonEq(t, "row", m["row"], fmt.Sprintf(`{"id":%d,"title":"cli %d"}`, i, i))
		if s := restSeq(t, m); s != int64(i) {
			t.Fatalf("read after CLI write %d: seq %d", i, s)
		}
	}
	m := restOK(t, srv, 200, "GET", "/api/tables/todos/rows?title=like.cli*&order=id.desc&limit=2", "")
	jsonEq(t, "rows", m["rows"], `[{"id":5,"title":"cli 5"},{"id":4,"title":"cli 4"}]`)
	if isNull(m["next"]) {
		t.Fatal("no next cursor on a partial page")
	}

	testenv.SQLite(t, db, `CREATE TABLE "new one"(k TEXT PRIMARY KEY, n INTEGER);`)
	testenv.WaitTriggers(t, db, "new one")
	testenv.WaitFor(t, timeout, "REST to serve the new table", func() bool {
		return restDo(t, srv, "GET", "/api/tables/new%20one/rows", "", "").status == 200
	})
	m = restOK(t, srv, 201, "POST", "/api/tables/new%20one/rows", `{"k":"a,b","n":1}`)
	jsonEq(t, "row", m["row"], `{"k":"a,b","n":1}`)
	restOK(t, srv, 200, "GET", "/api/tables/new%20one/rows/a%2Cb", "")
	if got := strings.TrimSpace(testenv.SQLite(t, db, `SELECT n FROM "new one" WHERE k = 'a,b';`)); got != "1" {
		t.Fatalf("CLI reads %q", got)
	}
}

// TestRESTRefusals: the binary answers the documented errors, and a refused request
// leaves the database file as it was.
func TestRESTRefusals(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `
CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, age INTEGER CHECK (age >= 0));
INSERT INTO users VALUES (1, 'a@x', 30);`, "--body-limit", "1024")
	tests := []struct {
		method, path, ctype, body string
		status                    int
		code                      string
	}{
		{"GET", "/api/tables/" + url.PathEscape(`users"; DROP TABLE users;--`) + "/rows", "", "", 404, "unknown_table"},
		{"DELETE", "/api/tables/users/rows/" + url.PathEscape("1 OR 1=1"), "", "", 404, "not_found"},
		{"GET", "/api/tables/users/rows?" + url.QueryEscape(`email"; DROP TABLE users;--`) + "=eq.1", "", "", 400, "unknown_column"},
		{"GET", "/api/tables/users/rows?order=" + url.QueryEscape(`"id"; DROP TABLE users;--`), "", "", 400, "bad_order"},
		{"GET", "/api/tables/users/rows?order=" + url.QueryEscape(`id"; DROP TABLE users;--`), "", "", 400, "unknown_column"},
		{"GET", "/api/tables/users/rows?email=regex.x", "", "", 400, "bad_filter"},
		{"POST", "/api/tables/users/rows", "", `{"email":"a@x"}`, 409, "unique_violation"},
		{"POST", "/api/tables/users/rows", "", `{"age":1}`, 409, "not_null_violation"},
		{"POST", "/api/tables/users/rows", "", `{"email":"b@x","age":-1}`, 409, "check_violation"},
		{"POST", "/api/tables/users/rows", "", `{"email":`, 400, "bad_json"},
		{"POST", "/api/tables/users/rows", "text/plain", `{"email":"b@x"}`, 415, "unsupported_media_type"},
		{"POST", "/api/tables/users/rows", "", `{"email":"` + strings.Repeat("x", 2000) + `"}`, 413, "too_large"},
	}
	before := testenv.SQLite(t, db, ".dump\n")
	for _, tc := range tests {
		r := restDo(t, srv, tc.method, tc.path, tc.ctype, tc.body)
		var e struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(r.body, &e)
		if r.status != tc.status || e.Error.Code != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, r.status, r.body, tc.status, tc.code)
		}
	}
	if after := testenv.SQLite(t, db, ".dump\n"); after != before {
		t.Fatalf("refused requests changed the database:\n%s\n---\n%s", before, after)
	}
	r := restDo(t, srv, "GET", "/api/openapi.json", "", "")
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"/api/tables/users/rows"`)) {
		t.Fatalf("openapi: %d %.200s", r.status, r.body)
	}
	r = restDo(t, srv, "GET", "/api/changes?since=0", "", "")
	if r.status != 200 || !bytes.HasPrefix(r.body, []byte(`{"changes":[],"next":0,"head":0`)) {
		t.Fatalf("changes: %d %s", r.status, r.body)
	}
}
