package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
)

// cli runs sql through the real sqlite3 shell against path and returns stdout.
func cli(t testing.TB, path, sql string) string {
	t.Helper()
	return testenv.SQLite(t, path, sql)
}

type env struct {
	t    *testing.T
	srv  *httptest.Server
	d    *testdb.DB
	path string
}

// newEnv creates a database with the sqlite3 CLI, opens it as sqlws does (migrate,
// meta, triggers) and serves web.NewRouter over it.
func newEnv(t *testing.T, schema string, opts testdb.Options, bodyLimit int64) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.db")
	cli(t, path, schema)
	d := testdb.Install(t, path, opts)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(NewRouter(Config{DB: d.CRUD, BodyLimit: bodyLimit, Logger: log}))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, d: d, path: path}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v\n%s", r.status, err, r.body)
	}
	return m
}

// do sends a request; rawPath is sent as is (already escaped). A non-empty body is
// sent as application/json unless ctype says otherwise ("-" for no Content-Type).
func (e *env) do(method, rawPath, ctype, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+rawPath, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	switch {
	case ctype == "-":
	case ctype != "":
		req.Header.Set("Content-Type", ctype)
	case body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) dump() string {
	e.t.Helper()
	return cli(e.t, e.path, ".dump\n")
}

// rowObj decodes a JSON row into a canonical string (sorted keys, exact numbers).
func canon(t testing.TB, raw []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

const testSchema = `
CREATE TABLE todos(
	id INTEGER PRIMARY KEY,
	title TEXT NOT NULL,
	done INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
	email TEXT UNIQUE,
	data BLOB,
	score REAL);
CREATE TABLE pairs(a TEXT, b INTEGER, v TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE notes(body TEXT);
CREATE TABLE strict_t(id INTEGER PRIMARY KEY, n INTEGER) STRICT;
CREATE TABLE gen(id INTEGER PRIMARY KEY, x INTEGER, y INTEGER GENERATED ALWAYS AS (x * 2) STORED);
CREATE TABLE parent(id TEXT PRIMARY KEY);
CREATE TABLE child(id INTEGER PRIMARY KEY, pid TEXT REFERENCES parent(id));
CREATE TABLE "we""ird tab/le"(k TEXT PRIMARY KEY, "c,o""l" TEXT);
INSERT INTO todos(id, title, done, email, data, score) VALUES
	(1, 'milk', 0, 'a@x', x'00ff', 0.5),
	(2, 'eggs', 1, NULL, NULL, NULL),
	(3, 'bread', 0, 'c@x', NULL, 1e300);
INSERT INTO pairs VALUES ('x', 1, 'x1'), ('a,b/c d"''é', 2, 'weird'), ('x', 2, 'x2');
INSERT INTO notes(body) VALUES ('first'), ('second');
INSERT INTO parent VALUES ('p1');
INSERT INTO "we""ird tab/le" VALUES ('k''1', 'v1');
`

const injectTable = `x%22%3B%20DROP%20TABLE%20todos%3B--` // x"; DROP TABLE todos;--

// TestRESTErrors sends every kind of bad request, including injection attempts, and
// checks the status, error code and message, and that the database file (read by the
// sqlite3 CLI) is byte-for-byte unchanged.
func TestRESTErrors(t *testing.T) {
	e := newEnv(t, testSchema, testdb.Options{}, 4096)
	big := `{"title":"` + strings.Repeat("x", 5000) + `"}`
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
		msgHas                          []string
	}{
		{"unknown table", "GET", "/api/tables/nope/rows", "", "", 404, "unknown_table", []string{"nope"}},
		{"unknown table schema", "GET", "/api/tables/nope", "", "", 404, "unknown_table", nil},
		{"injection table list", "GET", "/api/tables/" + injectTable + "/rows", "", "", 404, "unknown_table", []string{"DROP TABLE"}},
		{"injection table post", "POST", "/api/tables/" + injectTable + "/rows", "", `{"title":"x"}`, 404, "unknown_table", nil},
		{"injection table delete", "DELETE", "/api/tables/" + injectTable + "/rows/1", "", "", 404, "unknown_table", nil},
		{"injection table get", "GET", "/api/tables/todos%22%20--/rows/1", "", "", 404, "unknown_table", nil},
		{"unknown row", "GET", "/api/tables/todos/rows/999", "", "", 404, "not_found", nil},
		{"injection key delete", "DELETE", "/api/tables/todos/rows/1%20OR%201%3D1", "", "", 404, "not_found", nil},
		{"injection key quote", "DELETE", "/api/tables/todos/rows/1'%20OR%20'1'%3D'1", "", "", 404, "not_found", nil},
		{"injection key patch", "PATCH", "/api/tables/todos/rows/1%3B%20DROP%20TABLE%20todos", "", `{"title":"x"}`, 404, "not_found", nil},
		{"injection composite key", "GET", "/api/tables/pairs/rows/x'--,1", "", "", 404, "not_found", nil},
		{"non-integer rowid", "GET", "/api/tables/notes/rows/1%20OR%201", "", "", 404, "not_found", nil},
		{"composite key too short", "GET", "/api/tables/pairs/rows/x", "", "", 400, "bad_key", []string{"a, b"}},
		{"composite key too long", "DELETE", "/api/tables/pairs/rows/x,1,2", "", "", 400, "bad_key", nil},
		{"injection filter column", "GET", "/api/tables/todos/rows?title%22%3B%20DROP%20TABLE%20todos%3B--=eq.1", "", "", 400, "unknown_column", []string{"DROP TABLE"}},
		{"injection filter value", "GET", "/api/tables/todos/rows?title=eq.1%27%3B%20DROP%20TABLE%20todos%3B--&limit=1", "", "", 200, "", nil},
		{"injection order", "GET", "/api/tables/todos/rows?order=title%22%3B%20DROP%20TABLE%20todos%3B--", "", "", 400, "unknown_column", nil},
		{"injection order quoted", "GET", `/api/tables/todos/rows?order=%22x%5C%22%29%3B%20DROP%20TABLE%20todos%3B--%22.desc`, "", "", 400, "unknown_column", []string{"DROP TABLE"}},
		{"injection select", "GET", "/api/tables/todos/rows?select=id,title%22%20FROM%20sqlite_master%3B--", "", "", 400, "unknown_column", nil},
		{"injection post column", "POST", "/api/tables/todos/rows", "", `{"title":"x","done\") VALUES (1,1); DROP TABLE todos;--":1}`, 400, "unknown_column", []string{"DROP TABLE"}},
		{"unknown operator", "GET", "/api/tables/todos/rows?title=nope.1", "", "", 400, "bad_filter", []string{"nope", "title"}},
		{"filter without operator", "GET", "/api/tables/todos/rows?title=milk", "", "", 400, "bad_filter", []string{"title"}},
		{"bad in list", "GET", "/api/tables/todos/rows?id=in.(1,2", "", "", 400, "bad_filter", nil},
		{"unknown filter column", "GET", "/api/tables/todos/rows?nope=eq.1", "", "", 400, "unknown_column", []string{"nope"}},
		{"bad order", "GET", "/api/tables/todos/rows?order=title.desc.asc", "", "", 400, "bad_order", nil},
		{"bad limit", "GET", "/api/tables/todos/rows?limit=0", "", "", 400, "bad_limit", nil},
		{"bad limit text", "GET", "/api/tables/todos/rows?limit=ten", "", "", 400, "bad_limit", nil},
		{"bad cursor", "GET", "/api/tables/todos/rows?after=garbage!", "", "", 400, "bad_cursor", nil},
		{"bad query escape", "GET", "/api/tables/todos/rows?title=eq.%zz", "", "", 400, "bad_request", nil},
		{"malformed json", "POST", "/api/tables/todos/rows", "", `{"title":`, 400, "bad_json", nil},
		{"json array", "POST", "/api/tables/todos/rows", "", `[{"title":"x"}]`, 400, "bad_json", nil},
		{"trailing json", "POST", "/api/tables/todos/rows", "", `{"title":"x"} {}`, 400, "bad_json", nil},
		{"empty body", "POST", "/api/tables/todos/rows", "application/json", "", 400, "bad_json", nil},
		{"bad blob", "POST", "/api/tables/todos/rows", "", `{"title":"x","data":{"$blob":"zz"}}`, 400, "bad_value", []string{"data"}},
		{"unknown column", "POST", "/api/tables/todos/rows", "", `{"title":"x","nope":1}`, 400, "unknown_column", []string{"nope"}},
		{"strict wrong type", "POST", "/api/tables/strict_t/rows", "", `{"n":"abc"}`, 400, "wrong_type", []string{"INTEGER"}},
		{"generated column", "POST", "/api/tables/gen/rows", "", `{"x":1,"y":2}`, 400, "generated_column", []string{"y"}},
		{"generated column patch", "PATCH", "/api/tables/gen/rows/1", "", `{"y":2}`, 400, "generated_column", []string{"y"}},
		{"unique", "POST", "/api/tables/todos/rows", "", `{"title":"x","email":"a@x"}`, 409, "unique_violation", []string{"email"}},
		{"unique patch", "PATCH", "/api/tables/todos/rows/3", "", `{"email":"a@x"}`, 409, "unique_violation", []string{"email"}},
		{"primary key", "POST", "/api/tables/todos/rows", "", `{"id":1,"title":"x"}`, 409, "primary_key_violation", []string{"id"}},
		{"primary key without rowid", "POST", "/api/tables/pairs/rows", "", `{"a":"x","b":1}`, 409, "primary_key_violation", []string{"a", "b"}},
		{"not null", "POST", "/api/tables/todos/rows", "", `{"done":1}`, 409, "not_null_violation", []string{"title"}},
		{"not null patch", "PATCH", "/api/tables/todos/rows/1", "", `{"title":null}`, 409, "not_null_violation", []string{"title"}},
		{"check", "POST", "/api/tables/todos/rows", "", `{"title":"x","done":7}`, 409, "check_violation", []string{"done"}},
		{"foreign key", "POST", "/api/tables/child/rows", "", `{"pid":"nope"}`, 409, "foreign_key_violation", []string{"FOREIGN KEY"}},
		{"too large", "POST", "/api/tables/todos/rows", "", big, 413, "too_large", nil},
		{"too large patch", "PATCH", "/api/tables/todos/rows/1", "", big, 413, "too_large", nil},
		{"not json", "POST", "/api/tables/todos/rows", "text/plain", `{"title":"x"}`, 415, "unsupported_media_type", nil},
		{"form", "POST", "/api/tables/todos/rows", "application/x-www-form-urlencoded", `title=x`, 415, "unsupported_media_type", nil},
		{"no content type", "POST", "/api/tables/todos/rows", "-", `{"title":"x"}`, 415, "unsupported_media_type", nil},
		{"latin1", "PATCH", "/api/tables/todos/rows/1", "application/json; charset=latin1", `{"title":"x"}`, 415, "unsupported_media_type", nil},
		{"empty patch", "PATCH", "/api/tables/todos/rows/1", "", `{}`, 400, "bad_request", nil},
		{"patch unknown row", "PATCH", "/api/tables/todos/rows/999", "", `{"title":"x"}`, 404, "not_found", nil},
		{"delete unknown row", "DELETE", "/api/tables/todos/rows/999", "", "", 404, "not_found", nil},
		{"changes since negative", "GET", "/api/changes?since=-1", "", "", 400, "bad_request", nil},
		{"changes since text", "GET", "/api/changes?since=abc", "", "", 400, "bad_request", nil},
		{"changes future", "GET", "/api/changes?since=999999", "", "", 410, "future", nil},
		{"changes other stream", "GET", "/api/changes?since=0&stream=other", "", "", 410, "stream", nil},
		{"changes bad limit", "GET", "/api/changes?limit=0", "", "", 400, "bad_limit", nil},
		{"method not allowed", "PUT", "/api/tables/todos/rows/1", "", `{"title":"x"}`, 405, "method_not_allowed", nil},
		{"unknown route", "GET", "/api/nope", "", "", 404, "not_found", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.dump()
			r := e.do(tc.method, tc.path, tc.ctype, tc.body)
			if r.status != tc.status {
				t.Fatalf("%s %s: status %d, want %d\n%s", tc.method, tc.path, r.status, tc.status, r.body)
			}
			if tc.code != "" {
				var er struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(r.body, &er); err != nil {
					t.Fatalf("error body %s: %v", r.body, err)
				}
				if er.Error.Code != tc.code {
					t.Fatalf("code %q, want %q (%s)", er.Error.Code, tc.code, r.body)
				}
				for _, w := range tc.msgHas {
					if !strings.Contains(er.Error.Message, w) {
						t.Fatalf("message %q does not mention %q", er.Error.Message, w)
					}
				}
				for _, leak := range []string{"SQL logic error", "constraint failed: UNIQUE", "constraint failed: NOT NULL", "(2067)", "(1555)", "(275)", "modernc"} {
					if strings.Contains(er.Error.Message, leak) {
						t.Fatalf("message %q leaks driver text %q", er.Error.Message, leak)
					}
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("error Content-Type %q", ct)
				}
			}
			if r.status >= 400 {
				if after := e.dump(); after != before {
					t.Fatalf("a refused request changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			}
		})
	}
	// The tables all still exist with their rows.
	if got := cli(t, e.path, "SELECT count(*) FROM todos; SELECT count(*) FROM sqlite_master WHERE type='table' AND name='todos';"); got != "3\n1\n" {
		t.Fatalf("todos after the attacks: %q", got)
	}
}

func TestRESTCRUD(t *testing.T) {
	e := newEnv(t, testSchema, testdb.Options{}, 0)
	head := func() string {
		return strings.TrimSpace(cli(t, e.path, "SELECT max(seq) FROM sqlws_changes;"))
	}

	// GET /api/tables
	r := e.do("GET", "/api/tables", "", "")
	if r.status != 200 {
		t.Fatalf("tables: %d %s", r.status, r.body)
	}
	var tl struct {
		Tables []struct {
			Name       string   `json:"name"`
			PrimaryKey []string `json:"primary_key"`
			Columns    []struct {
				Name    string  `json:"name"`
				Type    string  `json:"type"`
				NotNull bool    `json:"notnull"`
				Default *string `json:"default"`
				PK      int     `json:"pk"`
			} `json:"columns"`
			RowCount int64 `json:"row_count"`
		} `json:"tables"`
	}
	if err := json.Unmarshal(r.body, &tl); err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, tb := range tl.Tables {
		byName[tb.Name] = i
	}
	todos := tl.Tables[byName["todos"]]
	if len(tl.Tables) != 8 || todos.RowCount != 3 || len(todos.PrimaryKey) != 1 || todos.PrimaryKey[0] != "id" ||
		len(todos.Columns) != 6 || todos.Columns[2].Name != "done" || !todos.Columns[2].NotNull ||
		todos.Columns[2].Default == nil || *todos.Columns[2].Default != "0" || todos.Columns[0].PK != 1 {
		t.Fatalf("tables: %s", r.body)
	}
	if notes := tl.Tables[byName["notes"]]; notes.PrimaryKey == nil || len(notes.PrimaryKey) != 0 || notes.RowCount != 2 {
		t.Fatalf("notes: %+v (%s)", notes, r.body)
	}
	if !bytes.Contains(r.body, []byte(`"primary_key":[]`)) {
		t.Fatalf("a table without a key must list primary_key as []: %s", r.body)
	}

	// GET one row: values in the change-record encoding.
	r = e.do("GET", "/api/tables/todos/rows/1", "", "")
	if r.status != 200 || canon(t, r.json(t)["row"]) != `{"data":{"$blob":"00FF"},"done":0,"email":"a@x","id":1,"score":0.5,"title":"milk"}` {
		t.Fatalf("get row: %d %s", r.status, r.body)
	}
	if string(r.json(t)["seq"]) != "0" {
		t.Fatalf("seq before any change: %s", r.body)
	}
	r = e.do("GET", "/api/tables/todos/rows/3", "", "")
	if !bytes.Contains(r.body, []byte(`"score":1e+300`)) {
		t.Fatalf("real encoding: %s", r.body)
	}

	// POST, with a charset parameter.
	r = e.do("POST", "/api/tables/todos/rows", "application/json; charset=utf-8",
		`{"title":"jam","done":true,"data":{"$blob":"cafe"},"score":{"$real":"-Infinity"},"email":"j@x"}`)
	if r.status != 201 {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if canon(t, m["row"]) != `{"data":{"$blob":"CAFE"},"done":1,"email":"j@x","id":4,"score":{"$real":"-Infinity"},"title":"jam"}` {
		t.Fatalf("post row: %s", r.body)
	}
	if string(m["seq"]) != head() || string(m["seq"]) != "1" {
		t.Fatalf("post seq %s, head %s", m["seq"], head())
	}
	if got := cli(t, e.path, "SELECT title, done, hex(data), score FROM todos WHERE id = 4;"); got != "jam|1|CAFE|-Inf\n" {
		t.Fatalf("CLI sees %q", got)
	}
	// The change record carries the same row image.
	r = e.do("GET", "/api/changes?since=0", "", "")
	var ch struct {
		Changes []struct {
			Seq int64           `json:"seq"`
			Op  string          `json:"op"`
			PK  json.RawMessage `json:"pk"`
			New json.RawMessage `json:"new"`
		} `json:"changes"`
		Head int64 `json:"head"`
	}
	if err := json.Unmarshal(r.body, &ch); err != nil || len(ch.Changes) != 1 || ch.Head != 1 {
		t.Fatalf("changes: %s (%v)", r.body, err)
	}
	if string(ch.Changes[0].New) != string(m["row"]) || string(ch.Changes[0].PK) != `{"id":4}` {
		t.Fatalf("change new %s, REST row %s", ch.Changes[0].New, m["row"])
	}

	// PATCH, key given as text of an INTEGER key.
	r = e.do("PATCH", "/api/tables/todos/rows/4", "", `{"title":"jam!","email":null}`)
	if r.status != 200 || !strings.Contains(string(r.body), `"title":"jam!"`) || string(r.json(t)["seq"]) != "2" {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	// DELETE
	r = e.do("DELETE", "/api/tables/todos/rows/4", "", "")
	if r.status != 200 || canon(t, r.body) != `{"seq":3}` || head() != "3" {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if got := cli(t, e.path, "SELECT count(*) FROM todos WHERE id = 4;"); got != "0\n" {
		t.Fatalf("row still there: %q", got)
	}

	// Composite key: parts percent-encoded, commas and slashes inside a part.
	weird := url.PathEscape(`a,b/c d"'é`)
	weird = strings.ReplaceAll(weird, ",", "%2C")
	r = e.do("GET", "/api/tables/pairs/rows/"+weird+",2", "", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"v":"weird"`) {
		t.Fatalf("composite key: %d %s", r.status, r.body)
	}
	r = e.do("PATCH", "/api/tables/pairs/rows/x,2", "", `{"v":"X2"}`)
	if r.status != 200 || canon(t, r.json(t)["row"]) != `{"a":"x","b":2,"v":"X2"}` {
		t.Fatalf("composite patch: %d %s", r.status, r.body)
	}
	r = e.do("DELETE", "/api/tables/pairs/rows/x,1", "", "")
	if r.status != 200 {
		t.Fatalf("composite delete: %d %s", r.status, r.body)
	}
	if got := cli(t, e.path, "SELECT a || ':' || b FROM pairs ORDER BY a, b;"); got != "a,b/c d\"'é:2\nx:2\n" {
		t.Fatalf("pairs: %q", got)
	}
	r = e.do("POST", "/api/tables/pairs/rows", "", `{"a":"new","b":"5","v":null}`)
	if r.status != 201 || canon(t, r.json(t)["row"]) != `{"a":"new","b":5,"v":null}` {
		t.Fatalf("composite post: %d %s", r.status, r.body)
	}

	// A table and a column whose names need quoting everywhere.
	tbl := url.PathEscape(`we"ird tab/le`)
	r = e.do("GET", "/api/tables/"+tbl+"/rows/k'1", "", "")
	if r.status != 200 || canon(t, r.json(t)["row"]) != `{"c,o\"l":"v1","k":"k'1"}` {
		t.Fatalf("weird table: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/tables/"+tbl+"/rows", "", `{"k":"k2","c,o\"l":"v2"}`)
	if r.status != 201 {
		t.Fatalf("weird post: %d %s", r.status, r.body)
	}
	q := url.Values{}
	q.Set(`c,o"l`, "in.(v2,\"x,y\")")
	q.Set("select", `"c,o\"l"`)
	q.Set("order", `"c,o\"l".desc`)
	r = e.do("GET", "/api/tables/"+tbl+"/rows?"+q.Encode(), "", "")
	if r.status != 200 || canon(t, r.json(t)["rows"]) != `[{"c,o\"l":"v2"}]` {
		t.Fatalf("weird list: %d %s", r.status, r.body)
	}

	// A rowid table: rows carry their rowid, which is the key.
	r = e.do("POST", "/api/tables/notes/rows", "", `{"body":"third"}`)
	if r.status != 201 || canon(t, r.json(t)["row"]) != `{"body":"third","rowid":3}` {
		t.Fatalf("rowid post: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/api/tables/notes/rows?order=rowid.desc&limit=1&select=rowid", "", "")
	if r.status != 200 || canon(t, r.json(t)["rows"]) != `[{"rowid":3}]` {
		t.Fatalf("rowid list: %d %s", r.status, r.body)
	}
	r = e.do("DELETE", "/api/tables/notes/rows/1", "", "")
	if r.status != 200 {
		t.Fatalf("rowid delete: %d %s", r.status, r.body)
	}

	// Generated columns are returned, not written.
	r = e.do("POST", "/api/tables/gen/rows", "", `{"x":21}`)
	if r.status != 201 || canon(t, r.json(t)["row"]) != `{"id":1,"x":21,"y":42}` {
		t.Fatalf("generated: %d %s", r.status, r.body)
	}

	// A row written with the CLI is readable at once.
	cli(t, e.path, "INSERT INTO todos(id, title) VALUES (77, 'from cli');")
	r = e.do("GET", "/api/tables/todos/rows/77", "", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"title":"from cli"`) {
		t.Fatalf("cli row: %d %s", r.status, r.body)
	}
	if string(r.json(t)["seq"]) != head() {
		t.Fatalf("read seq %s, head %s", r.json(t)["seq"], head())
	}

	// A table dropped behind sqlws's back answers 404, not 500.
	cli(t, e.path, "DROP TABLE notes;")
	r = e.do("GET", "/api/tables/notes/rows", "", "")
	if r.status != 404 {
		t.Fatalf("dropped table: %d %s", r.status, r.body)
	}

	// GET /healthz
	if r := e.do("GET", "/healthz", "", ""); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
}

func TestRESTListPagination(t *testing.T) {
	var b strings.Builder
	b.WriteString("CREATE TABLE items(id INTEGER PRIMARY KEY, grp TEXT, v INTEGER);\n")
	for i := 1; i <= 57; i++ {
		grp := []string{"a", "b", "c", "NULL"}[i%4]
		if grp != "NULL" {
			grp = "'" + grp + "'"
		}
		fmt.Fprintf(&b, "INSERT INTO items VALUES (%d, %s, %d);\n", i, grp, (i*37)%11)
	}
	e := newEnv(t, b.String(), testdb.Options{}, 0)
	cases := []struct{ query, sql string }{
		{"", "SELECT id FROM items ORDER BY id"},
		{"order=v.desc", "SELECT id FROM items ORDER BY v DESC, id"},
		{"order=grp.desc.nullsfirst,v", "SELECT id FROM items ORDER BY grp DESC NULLS FIRST, v, id"},
		{"grp=in.(a,c)&order=v", "SELECT id FROM items WHERE grp IN ('a','c') ORDER BY v, id"},
		{"grp=is.null&v=gte.5", "SELECT id FROM items WHERE grp IS NULL AND v >= 5 ORDER BY id"},
		{"v=neq.3&order=grp", "SELECT id FROM items WHERE v <> 3 ORDER BY grp, id"},
	}
	for _, tc := range cases {
		want := strings.Fields(cli(t, e.path, tc.sql+";"))
		for _, limit := range []int{1, 7, 100} {
			var got []string
			path := fmt.Sprintf("/api/tables/items/rows?limit=%d", limit)
			if tc.query != "" {
				path += "&" + tc.query
			}
			next := ""
			for page := 0; ; page++ {
				p := path
				if next != "" {
					p += "&after=" + url.QueryEscape(next)
				}
				r := e.do("GET", p, "", "")
				if r.status != 200 {
					t.Fatalf("%s: %d %s", p, r.status, r.body)
				}
				var pg struct {
					Rows []struct {
						ID json.Number `json:"id"`
					} `json:"rows"`
					Next *string `json:"next"`
					Seq  *int64  `json:"seq"`
				}
				if err := json.Unmarshal(r.body, &pg); err != nil || pg.Seq == nil {
					t.Fatalf("%s: %s (%v)", p, r.body, err)
				}
				for _, row := range pg.Rows {
					got = append(got, row.ID.String())
				}
				if pg.Next == nil {
					break
				}
				next = *pg.Next
				if page > 100 {
					t.Fatal("pagination does not end")
				}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("%s limit %d:\n got %v\nwant %v", tc.query, limit, got, want)
			}
		}
	}
	// limit above the maximum is clamped.
	r := e.do("GET", "/api/tables/items/rows?limit=5000", "", "")
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"next":null`)) {
		t.Fatalf("clamped limit: %d %s", r.status, r.body)
	}
}

// TestRESTBusy holds the write lock from a sqlite3 CLI process past the busy timeout:
// writes answer 503 with Retry-After, and nothing is written.
func TestRESTBusy(t *testing.T) {
	e := newEnv(t, testSchema, testdb.Options{BusyTimeout: 200 * time.Millisecond}, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.SQLite3Path, e.path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	io.WriteString(stdin, "BEGIN IMMEDIATE;\nSELECT 'locked';\n")
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("CLI did not take the lock: %q %v", line, err)
	}
	start := time.Now()
	r := e.do("POST", "/api/tables/todos/rows", "", `{"title":"blocked"}`)
	if r.status != 503 || r.header.Get("Retry-After") == "" || !bytes.Contains(r.body, []byte(`"code":"unavailable"`)) {
		t.Fatalf("write under lock: %d %v %s", r.status, r.header, r.body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("503 took %v", d)
	}
	// Reads still work in WAL mode.
	if r := e.do("GET", "/api/tables/todos/rows/1", "", ""); r.status != 200 {
		t.Fatalf("read under lock: %d %s", r.status, r.body)
	}
	io.WriteString(stdin, "ROLLBACK;\n")
	stdin.Close()
	cmd.Wait()
	if got := cli(t, e.path, "SELECT count(*) FROM todos WHERE title = 'blocked';"); got != "0\n" {
		t.Fatalf("blocked write landed: %q", got)
	}
	if r := e.do("POST", "/api/tables/todos/rows", "", `{"title":"after"}`); r.status != 201 {
		t.Fatalf("write after the lock: %d %s", r.status, r.body)
	}
}

// TestRESTSnapshotThenChanges loads a table page by page while sqlite3 CLI processes
// write to it, then applies GET /api/changes since the first page's seq on top: the
// client's copy must converge to the table exactly.
func TestRESTSnapshotThenChanges(t *testing.T) {
	var b strings.Builder
	b.WriteString("CREATE TABLE items(id INTEGER PRIMARY KEY, v INTEGER, tag TEXT);\n")
	for i := 1; i <= 200; i++ {
		fmt.Fprintf(&b, "INSERT INTO items VALUES (%d, %d, 't%d');\n", i, i, i%7)
	}
	e := newEnv(t, b.String(), testdb.Options{}, 0)

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for w := 0; w < 3; w++ {
		var s strings.Builder
		for i := 0; i < 40; i++ {
			id := 1 + (w*67+i*13)%200
			switch i % 4 {
			case 0:
				fmt.Fprintf(&s, "INSERT INTO items(v, tag) VALUES (%d, 'w%d');\n", i, w)
			case 1, 2:
				fmt.Fprintf(&s, "UPDATE items SET v = v + 1000, tag = 'u%d' WHERE id = %d;\n", w, id)
			case 3:
				fmt.Fprintf(&s, "DELETE FROM items WHERE id = %d;\n", id)
			}
		}
		wg.Add(1)
		go func(script string) {
			defer wg.Done()
			if _, err := testenv.RunSQLite(e.path, script); err != nil {
				errs <- err
			}
		}(s.String())
	}

	state := map[string]string{} // id → canonical row
	var seq int64 = -1
	next := ""
	for {
		p := "/api/tables/items/rows?limit=25"
		if next != "" {
			p += "&after=" + url.QueryEscape(next)
		}
		r := e.do("GET", p, "", "")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var pg struct {
			Rows []json.RawMessage `json:"rows"`
			Next *string           `json:"next"`
			Seq  int64             `json:"seq"`
		}
		if err := json.Unmarshal(r.body, &pg); err != nil {
			t.Fatal(err)
		}
		if seq < 0 {
			seq = pg.Seq // resume from the oldest snapshot of the load
		}
		for _, row := range pg.Rows {
			var k struct{ ID json.Number }
			json.Unmarshal(row, &k)
			state[k.ID.String()] = canon(t, row)
		}
		if pg.Next == nil {
			break
		}
		next = *pg.Next
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	applied := 0
	for {
		r := e.do("GET", fmt.Sprintf("/api/changes?since=%d&limit=50", seq), "", "")
		if r.status != 200 {
			t.Fatalf("changes: %d %s", r.status, r.body)
		}
		var cp struct {
			Changes []struct {
				Seq   int64
				Table string
				Op    string
				PK    json.RawMessage
				New   json.RawMessage
			}
			Head int64
		}
		if err := json.Unmarshal(r.body, &cp); err != nil {
			t.Fatal(err)
		}
		for _, c := range cp.Changes {
			if c.Seq != seq+1 {
				t.Fatalf("gap: seq %d after %d", c.Seq, seq)
			}
			seq = c.Seq
			var k struct{ ID json.Number }
			json.Unmarshal(c.PK, &k)
			if c.Op == "delete" {
				delete(state, k.ID.String())
			} else {
				state[k.ID.String()] = canon(t, c.New)
			}
			applied++
		}
		if seq >= cp.Head {
			break
		}
	}
	if applied == 0 {
		t.Fatal("no concurrent changes were applied; the test proves nothing")
	}

	out := cli(t, e.path, "SELECT json_object('id', id, 'v', v, 'tag', tag) FROM items ORDER BY id;")
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var k struct{ ID json.Number }
		json.Unmarshal([]byte(line), &k)
		want[k.ID.String()] = canon(t, []byte(line))
	}
	if len(want) != len(state) {
		t.Fatalf("client has %d rows, table %d", len(state), len(want))
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if state[k] != want[k] {
			t.Fatalf("row %s: client %s, table %s", k, state[k], want[k])
		}
	}
}

func TestRESTChangesPruned(t *testing.T) {
	e := newEnv(t, testSchema, testdb.Options{}, 0)
	for i := 0; i < 5; i++ {
		if r := e.do("POST", "/api/tables/notes/rows", "", `{"body":"x"}`); r.status != 201 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	if _, err := e.d.Log.Prune(context.Background(), changelog.Retention{MaxCount: 2}, 5); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/api/changes?since=1", "", "")
	if r.status != 410 || !bytes.Contains(r.body, []byte(`"code":"pruned"`)) {
		t.Fatalf("pruned: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/api/changes?since=3&limit=1", "", "")
	if r.status != 200 || canon(t, r.json(t)["head"]) != "5" || canon(t, r.json(t)["oldest"]) != "4" {
		t.Fatalf("after prune: %d %s", r.status, r.body)
	}
	var cp struct{ Changes []json.RawMessage }
	json.Unmarshal(r.body, &cp)
	if len(cp.Changes) != 1 || !bytes.HasPrefix(cp.Changes[0], []byte(`{"seq":4,"table":"notes","op":"insert"`)) {
		t.Fatalf("changes: %s", r.body)
	}
}

func TestOpenAPI(t *testing.T) {
	e := newEnv(t, testSchema, testdb.Options{}, 0)
	r := e.do("GET", "/api/openapi.json", "", "")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var doc struct {
		OpenAPI    string                     `json:"openapi"`
		Paths      map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]map[string]any `json:"properties"`
				Required   []string                  `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	for _, p := range []string{"/api/tables", "/api/changes", "/api/tables/todos/rows", "/api/tables/todos/rows/{key}",
		"/api/tables/we%22ird%20tab%2Fle/rows"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("no path %s", p)
		}
	}
	todos := doc.Components.Schemas["Row_todos"]
	if fmt.Sprint(todos.Properties["id"]["type"]) != "integer" ||
		fmt.Sprint(todos.Properties["email"]["type"]) != "[string null]" ||
		fmt.Sprint(todos.Properties["title"]["type"]) != "string" {
		t.Fatalf("todos schema: %+v", todos.Properties)
	}
	if _, ok := doc.Components.Schemas["Row_gen_write"].Properties["y"]; ok {
		t.Fatal("generated column in the write schema")
	}
	if _, ok := doc.Components.Schemas["Row_notes"].Properties["rowid"]; !ok {
		t.Fatal("rowid table schema lacks rowid")
	}
}

// TestRESTInputBounds: requests that would bind more values than a query may are the
// client's mistake, 400 with a clear message, not a 500 from SQLite's "too many SQL
// variables".
func TestRESTInputBounds(t *testing.T) {
	e := newEnv(t, testSchema, testdb.Options{}, 0)
	in := "in.(" + strings.TrimSuffix(strings.Repeat("1,", 1000), ",") + ")"
	var q []string
	for range 40 {
		q = append(q, "id="+in)
	}
	r := e.do("GET", "/api/tables/todos/rows?"+strings.Join(q, "&"), "", "")
	m := r.json(t)
	if r.status != 400 || !bytes.Contains(m["error"], []byte(`"code":"bad_filter"`)) ||
		!bytes.Contains(m["error"], []byte("too many filter values: 40000 in all; at most 10000 in one request")) {
		t.Fatalf("40 filters of 1000 values: %d %s", r.status, r.body)
	}
	// Ten such filters are within bounds and work.
	r = e.do("GET", "/api/tables/todos/rows?"+strings.Join(q[:10], "&"), "", "")
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"id":1`)) {
		t.Fatalf("10 filters of 1000 values: %d %.300s", r.status, r.body)
	}
}

// TestRESTClipsNames: a client-supplied name of 900 KB (table, column in a body, a
// filter or an order) is echoed in the error shortened to 128 bytes and "…".
func TestRESTClipsNames(t *testing.T) {
	e := newEnv(t, testSchema, testdb.Options{}, 2<<20)
	huge := strings.Repeat("n", 900<<10)
	clipped := strings.Repeat("n", 120) // of the 128 bytes kept, a route keeps its "/api/" too
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"table", "GET", "/api/tables/" + huge + "/rows", "", 404, "unknown_table"},
		{"table in a write", "POST", "/api/tables/" + huge + "/rows", "{}", 404, "unknown_table"},
		{"column in a body", "POST", "/api/tables/todos/rows", `{"` + huge + `":1}`, 400, "unknown_column"},
		{"filter column", "GET", "/api/tables/todos/rows?" + huge + "=eq.1", "", 400, "unknown_column"},
		{"filter operator", "GET", "/api/tables/todos/rows?id=" + huge + ".1", "", 400, "bad_filter"},
		{"order", "GET", "/api/tables/todos/rows?order=" + huge, "", 400, "unknown_column"},
		{"route", "GET", "/api/" + huge, "", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, "", tc.body)
			if r.status != tc.status || !bytes.Contains(r.body, []byte(`"code":"`+tc.code+`"`)) {
				t.Fatalf("%d %.300s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if len(r.body) > 1024 || !bytes.Contains(r.body, []byte(clipped)) || !bytes.Contains(r.body, []byte("n…")) {
				t.Fatalf("error body of %d bytes does not clip the name: %.400s", len(r.body), r.body)
			}
		})
	}
}
