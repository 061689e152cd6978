package web

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/internal/testdb"
)

// listIDs lists every id a REST list query returns, following next, or returns the
// error response.
func (e *env) listIDs(table, query string) ([]string, response) {
	e.t.Helper()
	var ids []string
	next := ""
	for page := 0; page < 100; page++ {
		p := "/api/tables/" + table + "/rows?limit=7"
		if query != "" {
			p += "&" + query
		}
		if next != "" {
			p += "&after=" + url.QueryEscape(next)
		}
		r := e.do("GET", p, "", "")
		if r.status != 200 {
			return nil, r
		}
		var pg struct {
			Rows []struct {
				ID json.Number `json:"id"`
			} `json:"rows"`
			Next *string `json:"next"`
		}
		if err := json.Unmarshal(r.body, &pg); err != nil {
			e.t.Fatalf("%s: %s (%v)", p, r.body, err)
		}
		for _, row := range pg.Rows {
			ids = append(ids, row.ID.String())
		}
		if pg.Next == nil {
			return ids, r
		}
		next = *pg.Next
	}
	e.t.Fatal("pagination does not end")
	return nil, response{}
}

// TestRESTFilterGroups: or/and groups, nesting and not. on REST lists select what the
// same condition selects in the sqlite3 shell, across pages.
func TestRESTFilterGroups(t *testing.T) {
	var b strings.Builder
	b.WriteString("CREATE TABLE items(id INTEGER PRIMARY KEY, grp TEXT COLLATE NOCASE, v INTEGER, \"or\" TEXT);\n")
	for i := 1; i <= 57; i++ {
		grp := []string{"'a'", "'B'", "'c'", "NULL"}[i%4]
		or := []string{"'x'", "NULL", "'y'"}[i%3]
		fmt.Fprintf(&b, "INSERT INTO items VALUES (%d, %s, %d, %s);\n", i, grp, (i*37)%11, or)
	}
	e := newEnv(t, b.String(), testdb.Options{}, 0)
	for _, tc := range []struct{ query, where string }{
		{"or=(grp.eq.a,v.gt.8)", "grp = 'a' OR v > 8"},
		{"grp=not.eq.a", "NOT (grp = 'a')"}, // NULLs excluded, as neq
		{"grp=neq.a", "grp <> 'a'"},
		{"grp=eq.b", "grp = 'b'"}, // NOCASE
		{"not.and=(grp.eq.a,v.lt.5)", "NOT (grp = 'a' AND v < 5)"},
		{"or=(grp.is.null,and(v.gte.3,v.lte.4))&v=neq.4", "(grp IS NULL OR (v >= 3 AND v <= 4)) AND v <> 4"},
		{"or=(grp.not.in.(a,b),v.eq.0)", "NOT (grp IN ('a','b')) OR v = 0"},
		{"and=(or(grp.eq.a,grp.eq.c),not.or(v.eq.1,v.eq.2))", "(grp = 'a' OR grp = 'c') AND NOT (v = 1 OR v = 2)"},
		{"or=(or.eq.x,v.eq.3)", `"or" = 'x' OR v = 3`}, // a column named or, inside a group
		{"grp=not.like.*A*", "NOT (grp LIKE '%A%')"},
		{"v=not.is.null&or=(grp.eq.a)&or=(v.gt.5)", "v IS NOT NULL AND grp = 'a' AND v > 5"},
	} {
		want := strings.Fields(cli(t, e.path, "SELECT id FROM items WHERE "+tc.where+" ORDER BY id;"))
		got, r := e.listIDs("items", tc.query)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", tc.query, r.status, r.body)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s:\n got %v\nwant %v (%s)", tc.query, got, want, tc.where)
		}
	}
	// A column named or cannot be a parameter: or= is the group.
	r := e.do("GET", "/api/tables/items/rows?or=eq.x", "", "")
	if r.status != 400 || !strings.Contains(string(r.body), "bad_filter") {
		t.Fatalf("or=eq.x: %d %s", r.status, r.body)
	}
}

// TestRESTFilterInjection: filter values and names meant as SQL, in plain filters and
// in groups, are literal values (they find the rows that hold exactly that text) or
// errors, never SQL; the database is unchanged.
func TestRESTFilterInjection(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, n INTEGER);
CREATE TABLE "we""ird tab/le"(id INTEGER PRIMARY KEY, "c,o""l" TEXT, "x.y" TEXT, "a) OR (1=1" TEXT);
INSERT INTO todos VALUES (1, '1) OR (1=1', 1), (2, '''; DROP TABLE todos; --', 2), (3, '/* x */', 3),
	(4, 'plain', 4), (5, 'é''"', 5), (6, '1=1', 6), (7, 'a,b)', 7), (8, '--', 8);
INSERT INTO "we""ird tab/le" VALUES (1, 'v1', 'd1', 'p1'), (2, 'v2', 'd2', 'p2');
`, testdb.Options{}, 0)
	before := e.dump()
	for _, tc := range []struct {
		table, query string
		want         string // ids, or the error code
	}{
		{"todos", "title=eq." + url.QueryEscape("1) OR (1=1"), "1"},
		{"todos", "or=(title.eq." + url.QueryEscape(`"1) OR (1=1"`) + ",n.eq.4)", "1 4"},
		{"todos", "title=eq." + url.QueryEscape("'; DROP TABLE todos; --"), "2"},
		{"todos", "or=(title.eq." + url.QueryEscape("'; DROP TABLE todos; --") + ")", "2"},
		{"todos", "title=in.(" + url.QueryEscape(`"/* x */","--"`) + ")", "3 8"},
		{"todos", "or=(title.in.(" + url.QueryEscape(`"a,b)","é'\""`) + "))", "5 7"},
		{"todos", "or=(title.eq." + url.QueryEscape(`"a,b)"`) + ",title.like." + url.QueryEscape("*'\"*") + ")", "5 7"},
		{"todos", "title=like." + url.QueryEscape("%' OR '1'='1"), ""},
		{"todos", "n=eq." + url.QueryEscape("1 OR 1=1"), ""},
		{"todos", "n=in.(" + url.QueryEscape("1) OR (1=1") + ")", ""},
		{"todos", "or=(n.eq.1)%20OR%20(1%3D1)", "bad_filter"},
		{"todos", "or=(n.eq.1,title.eq.x)%3B%20DROP%20TABLE%20todos", "bad_filter"},
		{"todos", "or=(" + url.QueryEscape(`"n\" = 1 OR 1=1 --"`) + ".eq.1)", "unknown_column"},
		{"todos", url.QueryEscape(`n" = 1 OR 1=1 --`) + "=eq.1", "unknown_column"},
		{"todos", "and=(n.eq.1,or(n.eq.2,title.eq.x),not.and(n.eq.%2F*,n.eq.*%2F))", ""},
		{"todos", "or=(n.eq.1,title.eq.--)", "1 8"},
		{"todos", "title=not.eq." + url.QueryEscape("1) OR (1=1") + "&n=lte.2", "2"},
		{"todos", "title=eq.%C3%A9%27%22", "5"},
		{url.PathEscape(`we"ird tab/le`), url.QueryEscape(`c,o"l`) + "=eq.v1", "1"},
		{url.PathEscape(`we"ird tab/le`), "or=(" + url.QueryEscape(`"c,o\"l".eq.v2,"x.y".eq.d1`) + ")", "1 2"},
		{url.PathEscape(`we"ird tab/le`), "or=(" + url.QueryEscape(`"a) OR (1=1".eq.p2`) + ")", "2"},
		{url.PathEscape(`we"ird tab/le`), url.QueryEscape("a) OR (1=1") + "=eq.p1", "1"},
	} {
		got, r := e.listIDs(tc.table, tc.query)
		if r.status != 200 {
			var er struct {
				Error struct{ Code, Message string }
			}
			json.Unmarshal(r.body, &er)
			if er.Error.Code != tc.want {
				t.Errorf("%s?%s: %d %s, want %q", tc.table, tc.query, r.status, r.body, tc.want)
			}
			continue
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s?%s: ids %v, want %q", tc.table, tc.query, got, tc.want)
		}
	}
	if after := e.dump(); after != before {
		t.Fatalf("filters changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
