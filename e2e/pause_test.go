package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

const pauseSchema = `CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, c TEXT DEFAULT 'dflt');`

const guardMessage = "sqlws: capture of t is paused for a schema change; run sqlws capture resume --table t"

// shellWriter is one sqlite3 shell inserting rows into t, one per transaction, as
// fast as it answers, for as long as a test runs a migration beside it. After each
// insert it asks whether the row is there, so it knows exactly which rows committed.
type shellWriter struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr strings.Builder // written by exec's copier until Wait returns
	stop   chan struct{}
	done   chan error

	mu        sync.Mutex
	committed []int64
	failed    []int64
}

func startShellWriter(t *testing.T, db string) *shellWriter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	w := &shellWriter{t: t, stop: make(chan struct{}), done: make(chan error, 1)}
	// No -bail: a refused insert is reported on stderr and the shell goes on.
	w.cmd = exec.CommandContext(ctx, testenv.SQLite3Path, "-cmd", ".timeout 10000", db)
	w.cmd.Stderr = &w.stderr
	stdin, err := w.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.done <- w.loop(stdin, bufio.NewReader(stdout))
		stdin.Close()
	}()
	t.Cleanup(func() { w.Stop() })
	return w
}

func (w *shellWriter) loop(stdin io.Writer, out *bufio.Reader) error {
	for id := int64(1); ; id++ {
		select {
		case <-w.stop:
			return nil
		default:
		}
		if _, err := fmt.Fprintf(stdin, "INSERT INTO t(id, a) VALUES (%d, 'w%d');\nSELECT 'ack', %d, (SELECT count(*) FROM t WHERE id = %d);\n", id, id, id, id); err != nil {
			return err
		}
		line, err := out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read ack %d: %w", id, err)
		}
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) != 3 || f[0] != "ack" || f[1] != strconv.FormatInt(id, 10) {
			return fmt.Errorf("unexpected shell output %q", line)
		}
		w.mu.Lock()
		if f[2] == "1" {
			w.committed = append(w.committed, id)
		} else {
			w.failed = append(w.failed, id)
		}
		w.mu.Unlock()
	}
}

// counts returns how many inserts committed and failed so far.
func (w *shellWriter) counts() (committed, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.committed), len(w.failed)
}

// waitCommitted waits until n more inserts committed than when called.
func (w *shellWriter) waitCommitted(n int, what string) {
	w.t.Helper()
	c0, _ := w.counts()
	testenv.WaitFor(w.t, 2*timeout, what, func() bool { c, _ := w.counts(); return c >= c0+n })
}

// waitFailed waits until n more inserts failed than when called.
func (w *shellWriter) waitFailed(n int, what string) {
	w.t.Helper()
	_, f0 := w.counts()
	testenv.WaitFor(w.t, 2*timeout, what, func() bool { _, f := w.counts(); return f >= f0+n })
}

// Stop ends the shell and returns its stderr; it fails the test if the writing loop
// broke down.
func (w *shellWriter) Stop() string {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	var err error
	select {
	case err = <-w.done:
		w.done <- err // for a later Stop
	case <-time.After(timeout):
		w.cmd.Process.Kill()
		w.t.Errorf("shell writer did not stop within %v", timeout)
	}
	w.cmd.Wait()
	if err != nil {
		w.t.Errorf("shell writer: %v", err)
	}
	return w.stderr.String()
}

// checkPauseRun checks what a pause, DROP COLUMN and resume beside a running server
// and a writer left behind: every insert the writer committed is in the changelog
// exactly once and reached the subscriber, in order and without a gap; every insert
// during the pause failed with the guard's message; changes before the pause carry
// the dropped column and those after it do not; and the server left the paused
// table alone.
func checkPauseRun(t *testing.T, db string, srv *testenv.Server, c *testenv.Client, w *shellWriter) {
	t.Helper()
	stderr := w.Stop()
	if len(w.failed) == 0 {
		t.Fatal("no write failed during the pause")
	}
	if n := strings.Count(stderr, guardMessage); n != len(w.failed) {
		t.Errorf("%d of %d failed writes carry the guard's message; shell stderr:\n%.2000s", n, len(w.failed), stderr)
	}
	firstFailed, lastFailed := w.failed[0], w.failed[len(w.failed)-1]
	for _, id := range w.committed {
		if id > firstFailed && id < lastFailed {
			t.Fatalf("insert %d committed during the pause (failures from %d to %d)", id, firstFailed, lastFailed)
		}
	}

	// The changelog: each committed insert exactly once, nothing else.
	// Rows in either layout: JSON images (printed SQL's triggers) or native values,
	// where the key column id is the image's first member, v0.
	out := testenv.SQLite(t, db, "SELECT coalesce(json_extract(new, '$.id'), v0) FROM sqlws_changes WHERE tbl = 't' ORDER BY seq;")
	logged := strings.Fields(out)
	if len(logged) != len(w.committed) {
		t.Fatalf("changelog holds %d inserts into t, the writer committed %d", len(logged), len(w.committed))
	}
	for i, id := range w.committed {
		if logged[i] != strconv.FormatInt(id, 10) {
			t.Fatalf("changelog entry %d is row %s, want %d", i, logged[i], id)
		}
	}

	// The subscriber (of every table: a migration tool's own table is captured too):
	// every change, in order, no gap; those of t the committed inserts, each with the
	// shape of its time.
	head := testenv.SQLiteInt(t, db, "SELECT max(seq) FROM sqlws_changes;")
	all := c.WaitSeq("all", head, 2*timeout)
	testenv.AssertContiguous(t, all, 1)
	var got []models.Change
	for _, ch := range all {
		if ch.Table == "t" {
			got = append(got, ch)
		}
	}
	if len(got) != len(w.committed) {
		t.Fatalf("subscriber got %d changes of t, the writer committed %d", len(got), len(w.committed))
	}
	for i, ch := range got {
		id := intField(t, ch, "id")
		if ch.Op != models.OpInsert || id != w.committed[i] {
			t.Fatalf("change %d: %s of row %d, want the insert of %d", i, ch.Op, id, w.committed[i])
		}
		var img map[string]json.RawMessage
		json.Unmarshal(ch.New, &img)
		_, hasC := img["c"]
		if id < firstFailed && !hasC || id > lastFailed && hasC {
			t.Fatalf("change of row %d (pause from %d to %d) has the wrong shape: %s", id, firstFailed, lastFailed, ch.New)
		}
	}
	expectMarker(t, c, "all", db, "t", "id", head+1)

	// The server saw the pause once and the resume once, and never reinstalled
	// capture triggers on the paused table.
	testenv.WaitFor(t, timeout, "the server to log the resume", func() bool {
		return strings.Contains(srv.Stderr(), `msg="capture resumed" table=t`)
	})
	serr := srv.Stderr()
	if logLines(serr, "capture paused for a schema change", "table=t") != 1 || logLines(serr, "capture resumed", "table=t") != 1 {
		t.Errorf("server did not log the pause and the resume once each:\n%s", serr)
	}
	// (Before the pause it may install triggers on a table the migration tool made.)
	// The resume that --print gives installs the JSON layout (it cannot register a
	// shape in the production file); the server upgrades those three triggers to the
	// native layout in the pass that notices the resume, and touches nothing else.
	_, afterPause, _ := strings.Cut(serr, "capture paused for a schema change")
	during, _, _ := strings.Cut(afterPause, "capture resumed")
	if n := logLines(during, "capture triggers updated"); n > 1 || n == 1 && logLines(during, "capture triggers updated", "created=3 dropped=3") != 1 ||
		logLines(serr, "level=ERROR") != 0 {
		t.Errorf("server changed triggers during the pause, or failed:\n%s", serr)
	}
	select {
	case <-srv.Exited():
		t.Fatalf("server exited:\n%s", serr)
	default:
	}
}

// TestCapturePauseFromCLI: the recipe of docs/operations.md with the sqlws commands
// and the sqlite3 shell, a writer inserting throughout and a server running.
func TestCapturePauseFromCLI(t *testing.T) {
	t.Parallel()
	db, srv := start(t, pauseSchema)
	if _, err := testenv.RunSQLite(db, "ALTER TABLE t DROP COLUMN c;"); err == nil {
		t.Fatal("DROP COLUMN worked without a pause; the test premise is gone")
	}
	c := srv.Dial(t)
	c.Subscribe("all", nil, testenv.Int64(0), "")
	w := startShellWriter(t, db)
	w.waitCommitted(20, "writes before the pause")

	out, errs, code := testenv.RunBinary(t, "capture", "pause", "--db", db, "--table", "t")
	if code != 0 || !strings.Contains(out, "capture of t paused") {
		t.Fatalf("capture pause: exit %d\n%s%s", code, out, errs)
	}
	w.waitFailed(3, "writes refused during the pause")
	testenv.SQLite(t, db, "ALTER TABLE t DROP COLUMN c;")
	w.waitFailed(3, "writes refused after the DROP COLUMN")
	out, errs, code = testenv.RunBinary(t, "capture", "resume", "--db", db, "--table", "t")
	if code != 0 || !strings.Contains(out, "capture of t resumed with columns id, a") {
		t.Fatalf("capture resume: exit %d\n%s%s", code, out, errs)
	}
	w.waitCommitted(20, "writes after the resume")
	checkPauseRun(t, db, srv, c, w)
}

// TestCapturePauseFromGoose: the same with the SQL that --print gives run as goose
// migrations, as an application would ship it: the pause printed from the
// production file, the resume printed from a development copy on which the column
// was already dropped.
func TestCapturePauseFromGoose(t *testing.T) {
	t.Parallel()
	db, srv := start(t, pauseSchema)
	dev := testenv.NewDB(t, pauseSchema+"ALTER TABLE t DROP COLUMN c;")
	pauseSQL, errs, code := testenv.RunBinary(t, "capture", "pause", "--print", "--db", db, "--table", "t")
	if code != 0 {
		t.Fatalf("capture pause --print: exit %d\n%s", code, errs)
	}
	resumeSQL, errs, code := testenv.RunBinary(t, "capture", "resume", "--print", "--db", dev, "--table", "t")
	if code != 0 {
		t.Fatalf("capture resume --print: exit %d\n%s", code, errs)
	}
	fsys := fstest.MapFS{
		"00001_pause_t.sql":  {Data: []byte("-- +goose Up\n" + pauseSQL)},
		"00002_drop_c.sql":   {Data: []byte("-- +goose Up\nALTER TABLE t DROP COLUMN c;\n")},
		"00003_resume_t.sql": {Data: []byte("-- +goose Up\n" + resumeSQL)},
	}
	gdb, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer gdb.Close()
	p, err := goose.NewProvider(goose.DialectSQLite3, gdb, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	up := func(what string) {
		t.Helper()
		if _, err := p.UpByOne(ctx); err != nil {
			t.Fatalf("goose up (%s): %v", what, err)
		}
	}

	c := srv.Dial(t)
	c.Subscribe("all", nil, testenv.Int64(0), "")
	w := startShellWriter(t, db)
	w.waitCommitted(20, "writes before the pause")
	up("pause")
	w.waitFailed(3, "writes refused during the pause")
	up("drop column")
	w.waitFailed(3, "writes refused after the DROP COLUMN")
	up("resume")
	w.waitCommitted(20, "writes after the resume")
	checkPauseRun(t, db, srv, c, w)
	if n := testenv.SQLiteInt(t, db, "SELECT count(*) FROM goose_db_version WHERE version_id > 0;"); n != 3 {
		t.Errorf("goose recorded %d migrations, want 3", n)
	}
	testenv.WaitFor(t, timeout, "the server to move t back to the native layout", func() bool {
		return testenv.SQLiteInt(t, db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 't' AND sql LIKE '%(tbl, op, ts, sid,%';") == 3
	})
}
