package filter_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/filter"
	"github.com/sqlws/sqlws/models"
)

var todos = &capture.Table{Table: models.Table{Name: "todos", PrimaryKey: []string{"id"}, Columns: []models.Column{
	{Name: "id", Type: "INTEGER", PK: 1}, {Name: "title", Type: "TEXT"}, {Name: "done", Type: "INTEGER"}, {Name: "note", Type: "TEXT"}},
	Collations: map[string]string{}}}

var keyless = &capture.Table{Table: models.Table{Name: "log", RowidKey: "rowid", Columns: []models.Column{{Name: "msg", Type: "TEXT"}},
	Collations: map[string]string{}}}

func change(seq int64, table, op, pk, old, new string) *filter.Change {
	b := func(s string) []byte {
		if s == "" {
			return nil
		}
		return []byte(s)
	}
	return filter.NewChange(models.Encoded{Seq: seq, Table: table,
		JSON: models.AppendChange(nil, seq, table, op, b(pk), b(old), b(new), 7)})
}

func row(id int, title string, done int, note string) string {
	return fmt.Sprintf(`{"id":%d,"title":%q,"done":%d,"note":%q}`, id, title, done, note)
}

// TestApply: the delivery rules of docs/protocol.md, one case per row of its table
// and per edge around them.
func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name       string
		where, sel string
		op         string
		old, new   string
		want       string // the record's fields after "op", or "" for Skip
	}{
		{"insert matching", "done=eq.0", "", "insert", "", row(1, "a", 0, "n"), `"pk":{"id":1},"old":null,"new":` + row(1, "a", 0, "n")},
		{"insert outside", "done=eq.0", "", "insert", "", row(1, "a", 1, "n"), ""},
		{"delete of a matching row", "done=eq.0", "", "delete", row(1, "a", 0, "n"), "", `"pk":{"id":1},"old":` + row(1, "a", 0, "n") + `,"new":null`},
		{"delete of a row outside", "done=eq.0", "", "delete", row(1, "a", 1, "n"), "", ""},
		{"update inside", "done=eq.0", "", "update", row(1, "a", 0, "n"), row(1, "b", 0, "n"), `"pk":{"id":1},"old":` + row(1, "a", 0, "n") + `,"new":` + row(1, "b", 0, "n")},
		{"update moving in", "done=eq.0", "", "update", row(1, "a", 1, "n"), row(1, "a", 0, "n"), `"moved":"in","pk":{"id":1},"old":null,"new":` + row(1, "a", 0, "n")},
		{"update moving out", "done=eq.0", "", "update", row(1, "a", 0, "n"), row(1, "a", 1, "n"), `"moved":"out","pk":{"id":1},"old":` + row(1, "a", 0, "n") + `,"new":null`},
		{"update outside", "done=eq.0", "", "update", row(1, "a", 1, "n"), row(1, "b", 1, "n"), ""},
		{"select projects", "", "id,title", "update", row(1, "a", 0, "n"), row(1, "b", 0, "n"), `"pk":{"id":1},"old":{"id":1,"title":"a"},"new":{"id":1,"title":"b"}`},
		{"update of unselected columns only", "", "id,title", "update", row(1, "a", 0, "n"), row(1, "a", 1, "m"), ""},
		{"update of the key only", "", "title", "update", row(1, "a", 0, "n"), row(2, "a", 0, "n"), `"pk":{"id":1},"old":{"title":"a"},"new":{"title":"a"}`},
		{"moved out with select", "done=eq.0", "title", "update", row(1, "a", 0, "n"), row(1, "a", 1, "n"), `"moved":"out","pk":{"id":1},"old":{"title":"a"},"new":null`},
		{"neq does not match NULL", "note=neq.x", "", "insert", "", `{"id":1,"title":"a","done":0,"note":null}`, ""},
		{"not does not match NULL", "note=not.eq.x", "", "insert", "", `{"id":1,"title":"a","done":0,"note":null}`, ""},
		{"group", "or=(done.eq.1,title.like.*milk*)", "", "insert", "", row(1, "Oat MILK", 0, ""), `"pk":{"id":1},"old":null,"new":` + row(1, "Oat MILK", 0, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := filter.Compile(todos, tc.where, tc.sel, 0)
			if err != nil {
				t.Fatal(err)
			}
			rec, res := f.Apply(change(5, "todos", tc.op, `{"id":1}`, tc.old, tc.new))
			if tc.want == "" {
				if res != filter.Skip {
					t.Fatalf("got %v %s, want Skip", res, rec)
				}
				return
			}
			want := `{"seq":5,"table":"todos","op":"` + tc.op + `",` + tc.want + `,"ts":7}`
			if res != filter.Deliver || string(rec) != want {
				t.Fatalf("got %v\n%s\nwant\n%s", res, rec, want)
			}
		})
	}
}

// TestApplyUnchangedShared: a filter that narrows nothing passes the window's bytes
// through, so subscribers share them.
func TestApplyUnchangedShared(t *testing.T) {
	f, err := filter.Compile(todos, "done=eq.0", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	e := models.Encoded{Seq: 1, Table: "todos", JSON: models.AppendChange(nil, 1, "todos", "insert", []byte(`{"id":1}`), nil, []byte(row(1, "a", 0, "")), 7)}
	rec, res := f.Apply(filter.NewChange(e))
	if res != filter.Deliver || &rec[0] != &e.JSON[0] {
		t.Fatalf("got %v, a copy: %v", res, &rec[0] != &e.JSON[0])
	}
}

// TestApplyStale: a row without a column the filter uses is Stale after the seq the
// filter was compiled at, and reads as NULL up to it (a change from before the
// column was added).
func TestApplyStale(t *testing.T) {
	f, err := filter.Compile(todos, "note=is.null", "id,note", 10)
	if err != nil {
		t.Fatal(err)
	}
	old := `{"id":1,"title":"a","done":0}`
	if rec, res := f.Apply(change(9, "todos", "insert", `{"id":1}`, "", old)); res != filter.Deliver || !strings.Contains(string(rec), `"new":{"id":1}`) {
		t.Fatalf("before the filter's seq: %v %s, want Deliver with note read as NULL", res, rec)
	}
	if _, res := f.Apply(change(11, "todos", "insert", `{"id":1}`, "", old)); res != filter.Stale {
		t.Fatalf("after the filter's seq: %v, want Stale", res)
	}
	if _, code, _ := errors.Public(f.StaleError()); code != errors.CodeUnknownColumn {
		t.Fatalf("stale error code %s", code)
	}
}

// TestApplyRowidKey: a where on the rowid of a table without a declared key reads it
// from pk, as REST's query does from the table.
func TestApplyRowidKey(t *testing.T) {
	f, err := filter.Compile(keyless, "rowid=gt.5", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   int
		want filter.Result
	}{{5, filter.Skip}, {6, filter.Deliver}} {
		c := change(1, "log", "insert", fmt.Sprintf(`{"rowid":%d}`, tc.id), "", `{"msg":"m"}`)
		if _, res := f.Apply(c); res != tc.want {
			t.Errorf("rowid %d: %v, want %v", tc.id, res, tc.want)
		}
	}
}

// TestCompileErrors: the REST codes, and nothing compiled on error.
func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct{ where, sel, code string }{
		{"done=zz.1", "", "bad_filter"},
		{"nope=eq.1", "", "unknown_column"},
		{"", "nope", "unknown_column"},
		{"", ",", "bad_select"},
		{"and=(done.eq.1,or(nope.eq.2))", "", "unknown_column"},
	} {
		f, err := filter.Compile(todos, tc.where, tc.sel, 0)
		if _, code, _ := errors.Public(err); f != nil || string(code) != tc.code {
			t.Errorf("where %q select %q: %v (%s), want %s", tc.where, tc.sel, err, code, tc.code)
		}
	}
}

// BenchmarkApply: what one filter costs per change (decoding shared by every filter
// of the change, once).
func BenchmarkApply(b *testing.B) {
	for _, tc := range []struct{ name, where, sel string }{
		{"like", "title=like.*x*", ""},
		{"eq+select", "done=eq.0", "id,title"},
	} {
		f, err := filter.Compile(todos, tc.where, tc.sel, 0)
		if err != nil {
			b.Fatal(err)
		}
		e := models.Encoded{Seq: 1, Table: "todos", JSON: models.AppendChange(nil, 1, "todos", "update", []byte(`{"id":1}`),
			[]byte(row(1, "xylophone", 0, strings.Repeat("n", 200))), []byte(row(1, "xylophones", 0, strings.Repeat("n", 200))), 7)}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, res := f.Apply(filter.NewChange(e)); res != filter.Deliver {
					b.Fatal(res)
				}
			}
		})
	}
}
