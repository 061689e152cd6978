package e2e

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

// TestServeUnwritable: serve on a file it cannot write refuses, naming the file or
// directory and the permission, unless capture is already installed and up to date;
// then it serves read-only: reads and subscriptions work, REST writes are 503
// read_only, and what others write still streams.
func TestServeUnwritable(t *testing.T) {
	t.Parallel()
	t.Run("installed", func(t *testing.T) {
		db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('one');`, "--retain-count", "100")
		srv.Stop()
		undo := testenv.Unwritable(t, db)
		srv = srv.Restart(t)
		// stderr is copied apart from stdout's listening line: wait for it.
		testenv.WaitFor(t, timeout, "the read-only start to be logged", func() bool {
			stderr := srv.Stderr()
			return logLines(stderr, "level=WARN", "serving read-only: no write permission on "+db) == 1 && strings.Contains(stderr, "retention is off")
		})
		r := restDo(t, srv, "POST", "/api/tables/t/rows", "", `{"v":"two"}`)
		if r.status != 503 || !bytes.Contains(r.body, []byte(`"code":"read_only"`)) {
			t.Fatalf("REST write: %d %s", r.status, r.body)
		}
		restOK(t, srv, 200, "GET", "/api/tables/t/rows/1", "")
		c := srv.Dial(t)
		c.Subscribe("a", []string{"t"}, testenv.Int64(0), "")
		// Another program that can write does; the read-only server streams it.
		undo()
		testenv.SQLite(t, db, "INSERT INTO t(v) VALUES ('from the shell');")
		ch := c.WaitChanges("a", 1, timeout)[0]
		checkChange(t, ch, "t", "insert", `{"id":2}`, "null", `{"id":2,"v":"from the shell"}`)
		// The server decided at start: it stays read-only.
		if r := restDo(t, srv, "DELETE", "/api/tables/t/rows/1", "", ""); r.status != 503 {
			t.Fatalf("REST delete: %d %s", r.status, r.body)
		}
	})
	t.Run("not installed", func(t *testing.T) {
		db := testenv.NewDB(t, `PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY);`)
		testenv.Unwritable(t, db)
		_, errs, code := testenv.RunBinary(t, "serve", "--db", db, "--addr", "127.0.0.1:0")
		if code == 0 || !strings.Contains(errs, "no write permission on "+db) || !strings.Contains(errs, "sqlws is not installed") {
			t.Fatalf("serve on an unwritable, uninstalled file: exit %d\n%s", code, errs)
		}
	})
	t.Run("directory", func(t *testing.T) {
		db := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY);`)
		dir := filepath.Dir(db)
		testenv.Unwritable(t, dir)
		_, errs, code := testenv.RunBinary(t, "serve", "--db", db, "--addr", "127.0.0.1:0")
		if code == 0 || !strings.Contains(errs, "directory "+dir+" is not writable") {
			t.Fatalf("serve in an unwritable directory: exit %d\n%s", code, errs)
		}
		_, errs, code = testenv.RunBinary(t, "serve", "--db", filepath.Join(dir, "new.db"), "--addr", "127.0.0.1:0")
		if code == 0 || !strings.Contains(errs, "cannot create "+filepath.Join(dir, "new.db")) {
			t.Fatalf("serve of a new file in an unwritable directory: exit %d\n%s", code, errs)
		}
	})
}

// TestWriteFaultStreamWithoutGap: the WAL file becomes immutable under a running
// server (writes fail as on a failing disk). REST writes answer 503 "disk I/O error",
// the server logs the episode once with the SQLite code and once when it is over,
// and a subscriber receives every committed change, in order, without a gap.
func TestWriteFaultStreamWithoutGap(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`)
	c := srv.Dial(t)
	c.Subscribe("a", nil, testenv.Int64(0), "")
	var want []string // v of every committed row, in commit order
	post := func(v string) restResp {
		r := restDo(t, srv, "POST", "/api/tables/t/rows", "", `{"v":"`+v+`"}`)
		if r.status == 201 {
			want = append(want, v)
		}
		return r
	}
	for i := range 5 {
		if r := post(fmt.Sprintf("before %d", i)); r.status != 201 {
			t.Fatalf("write before the fault: %d %s", r.status, r.body)
		}
	}
	undo := testenv.Immutable(t, db+"-wal")
	for i := range 20 {
		r := post(fmt.Sprintf("during %d", i))
		if r.status != 503 || !bytes.Contains(r.body, []byte(`{"error":{"code":"unavailable","message":"disk I/O error; retry later"}}`)) {
			t.Fatalf("write during the fault: %d %s", r.status, r.body)
		}
	}
	if _, err := testenv.RunSQLite(db, "INSERT INTO t(v) VALUES ('cli during');"); err == nil {
		t.Fatal("the CLI wrote to an immutable WAL file; the fault is not what the test thinks")
	}
	restOK(t, srv, 200, "GET", "/api/tables/t/rows", "") // reads go on
	undo()
	for i := range 5 {
		if r := post(fmt.Sprintf("after %d", i)); r.status != 201 {
			t.Fatalf("write after the fault: %d %s", r.status, r.body)
		}
	}
	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES ('cli after 0'); INSERT INTO t(v) VALUES ('cli after 1');")
	want = append(want, "cli after 0", "cli after 1")

	got := c.WaitChanges("a", len(want), timeout)
	testenv.AssertContiguous(t, got, 1)
	for i, ch := range got {
		if ch.Op != models.OpInsert || string(field(t, ch, "v")) != strconv.Quote(want[i]) {
			t.Fatalf("change %d = %s %s, want the insert of %q", i, ch.Op, ch.New, want[i])
		}
	}
	expectMarker(t, c, "a", db, "t", "id", int64(len(want)+1))
	testenv.WaitFor(t, timeout, "the recovery to be logged", func() bool {
		return strings.Contains(srv.Stderr(), "database writes recovered")
	})
	stderr := srv.Stderr()
	if n := logLines(stderr, "level=ERROR", "database writes failing: disk I/O error", "sqlite_code=778", "sqlite_result=SQLITE_IOERR_WRITE"); n != 1 {
		t.Errorf("fault logged %d times, want once:\n%s", n, stderr)
	}
	if n := logLines(stderr, "database writes recovered", "failed_calls=20"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, stderr)
	}
	if n := logLines(stderr, "request failed"); n != 0 {
		t.Errorf("%d per-request error lines:\n%s", n, stderr)
	}
}
