// Package e2e holds black-box end-to-end tests of the sqlws binary: it is built once,
// run as a subprocess against temporary databases written with the real sqlite3 CLI,
// and spoken to over WebSocket exactly as docs/protocol.md describes.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// timeout is the bound for a change or reply to arrive.
const timeout = testenv.Timeout

// start creates a database with schema and starts a server on it.
func start(t *testing.T, schema string, args ...string) (string, *testenv.Server) {
	t.Helper()
	db := testenv.NewDB(t, schema)
	return db, testenv.StartServer(t, db, args...)
}

// obj decodes a JSON object keeping each value's raw text.
func obj(t *testing.T, raw json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		t.Fatalf("want a JSON object, got %s (%v)", raw, err)
	}
	return m
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

// canon decodes JSON with numbers kept as their text.
func canon(t *testing.T, raw []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("bad JSON %s: %v", raw, err)
	}
	return v
}

// jsonEq fails unless got and want are the same JSON value (object key order and
// whitespace aside; numbers compared by their text).
func jsonEq(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	if !reflect.DeepEqual(canon(t, got), canon(t, []byte(want))) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

// checkChange checks one change record's table, op, pk, old and new (old/new "null"
// for absent images).
func checkChange(t *testing.T, c models.Change, table, op, pk, old, new string) {
	t.Helper()
	if c.Table != table || c.Op != op {
		t.Errorf("seq %d: table/op = %q/%q, want %q/%q", c.Seq, c.Table, c.Op, table, op)
	}
	jsonEq(t, fmt.Sprintf("seq %d (%s %s) pk", c.Seq, table, op), c.PK, pk)
	jsonEq(t, fmt.Sprintf("seq %d (%s %s) old", c.Seq, table, op), c.Old, old)
	jsonEq(t, fmt.Sprintf("seq %d (%s %s) new", c.Seq, table, op), c.New, new)
}

// field returns new[col] (or old[col] if new is null) of a change.
func field(t *testing.T, c models.Change, col string) json.RawMessage {
	t.Helper()
	img := c.New
	if isNull(img) {
		img = c.Old
	}
	v, ok := obj(t, img)[col]
	if !ok {
		t.Fatalf("seq %d: row image %s has no column %q", c.Seq, img, col)
	}
	return v
}

// intField returns an integer column of a change's row image.
func intField(t *testing.T, c models.Change, col string) int64 {
	t.Helper()
	raw := field(t, c, col)
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		t.Fatalf("seq %d: column %q = %s, want an integer", c.Seq, col, raw)
	}
	return n
}

// seqs lists the seq values of changes.
func seqs(changes []models.Change) []int64 {
	s := make([]int64, len(changes))
	for i, c := range changes {
		s[i] = c.Seq
	}
	return s
}

// cliSeqs reads every seq in the changelog, in order, with the CLI.
func cliSeqs(t *testing.T, db string) []int64 {
	t.Helper()
	out := strings.Fields(testenv.SQLite(t, db, "SELECT seq FROM sqlws_changes ORDER BY seq;"))
	s := make([]int64, len(out))
	for i, f := range out {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("bad seq %q", f)
		}
		s[i] = n
	}
	return s
}

// inserts returns SQL of n autocommit INSERTs "INSERT INTO table(col) VALUES(from+i)".
func inserts(table, col string, from, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "INSERT INTO %s(%s) VALUES(%d);\n", table, col, from+i)
	}
	return b.String()
}

// expectMarker writes a marker row and checks that the next change subscription id
// receives is that row, i.e. nothing unexpected was queued or is still coming. The
// table needs an integer column col; the marker value is -1.
func expectMarker(t *testing.T, c *testenv.Client, id, db, table, col string, wantSeq int64) {
	t.Helper()
	if extra := c.Take(id); len(extra) > 0 {
		t.Fatalf("subscription %q: %d unexpected extra changes, first seq %d", id, len(extra), extra[0].Seq)
	}
	testenv.SQLite(t, db, fmt.Sprintf("INSERT INTO %s(%s) VALUES(-1);", table, col))
	m := c.WaitChanges(id, 1, timeout)[0]
	if m.Table != table || m.Op != models.OpInsert || intField(t, m, col) != -1 {
		t.Fatalf("subscription %q: next change after the expected ones is not the marker: %+v", id, m)
	}
	if wantSeq > 0 && m.Seq != wantSeq {
		t.Fatalf("subscription %q: marker seq = %d, want %d", id, m.Seq, wantSeq)
	}
}
