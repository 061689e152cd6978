package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// TestBadInput: every malformed or refused request gets the documented error code
// and leaves the connection and its other subscriptions working; a message over the
// read limit closes with 1009 and the server stays up.
func TestBadInput(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	c := srv.Dial(t)
	c.Subscribe("live", []string{"t"}, nil, "")

	const nullID = "null" // Msg.ID() of a JSON null id
	cases := []struct {
		name, raw, code string
		id              string // want id; "" = not checked
	}{
		{"malformed JSON", `{"type":"subscribe","id":"x",`, "bad_request", nullID},
		{"not JSON", `hello`, "bad_request", nullID},
		{"not an object", `[1,2,3]`, "bad_request", nullID},
		{"unknown type", `{"type":"frobnicate","id":"u1"}`, "bad_request", ""},
		{"missing type", `{"id":"u2","tables":["t"]}`, "bad_request", ""},
		{"missing id", `{"type":"subscribe","tables":["t"]}`, "bad_request", nullID},
		{"id is an object", `{"type":"subscribe","id":{"a":1},"tables":["t"]}`, "bad_request", nullID},
		{"unknown table", `{"type":"subscribe","id":"u3","tables":["nope"]}`, "unknown_table", "u3"},
		{"unknown among known", `{"type":"subscribe","id":"u4","tables":["t","nope"]}`, "unknown_table", "u4"},
		{"sqlws's own table", `{"type":"subscribe","id":"u5","tables":["sqlws_changes"]}`, "unknown_table", "u5"},
		{"since negative", `{"type":"subscribe","id":"u6","since":-1}`, "bad_request", "u6"},
		{"since string", `{"type":"subscribe","id":"u7","since":"5"}`, "bad_request", "u7"},
		{"since float", `{"type":"subscribe","id":"u8","since":1.5}`, "bad_request", "u8"},
		{"tables not a list", `{"type":"subscribe","id":"u9","tables":"t"}`, "bad_request", "u9"},
		{"tables holds a number", `{"type":"subscribe","id":"u10","tables":[1]}`, "bad_request", "u10"},
		{"stream not a string", `{"type":"subscribe","id":"u11","stream":5}`, "bad_request", "u11"},
		{"duplicate id", `{"type":"subscribe","id":"live","tables":["t"]}`, "duplicate_id", "live"},
		{"unsubscribe unknown", `{"type":"unsubscribe","id":"ghost"}`, "unknown_subscription", "ghost"},
		{"unsubscribe missing id", `{"type":"unsubscribe"}`, "bad_request", nullID},
		{"just under the read limit", `{"type":"subscribe","id":"u12","tables":["` + strings.Repeat("x", 60000) + `"]}`, "unknown_table", "u12"},
	}
	for i, k := range cases {
		c.Send(k.raw)
		m := c.Next(timeout)
		if m.Type != protocol.TypeError || m.Code != k.code {
			t.Errorf("%s: got %.300s, want error %s", k.name, m.Raw, k.code)
		} else if k.id != "" && m.ID() != k.id {
			t.Errorf("%s: error id = %s, want %s", k.name, m.RawID, k.id)
		}
		if m.Type == protocol.TypeError && m.Message == "" {
			t.Errorf("%s: error without a message: %s", k.name, m.Raw)
		}
		// The existing subscription still works, and got nothing else in between.
		testenv.SQLite(t, db, fmt.Sprintf("INSERT INTO t(v) VALUES(%d);", i))
		ch := c.WaitChanges("live", 1, timeout)[0]
		if ch.Seq != int64(i+1) || intField(t, ch, "v") != int64(i) {
			t.Fatalf("after %s: live subscription got seq %d v=%s, want seq %d v=%d", k.name, ch.Seq, field(t, ch, "v"), i+1, i)
		}
	}
	// A refused subscribe leaves no subscription behind: its id is free.
	c.Subscribe("u3", []string{"t"}, nil, "")
	c.Unsubscribe("u3")
	if closed, err := c.Closed(); closed {
		t.Fatalf("connection ended: %v", err)
	}

	// Over the 64 KiB read limit: close 1009.
	c.Send(`{"type":"subscribe","id":"big","tables":["` + strings.Repeat("x", 70000) + `"]}`)
	if code, err := c.WaitClosed(timeout); code != websocket.StatusMessageTooBig {
		t.Errorf("oversized message: connection ended with code %d (%v), want 1009", code, err)
	}
	// The server is still up.
	c2 := srv.Dial(t)
	c2.Subscribe("a", nil, nil, "")
	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES(1000);")
	if ch := c2.WaitChanges("a", 1, timeout)[0]; intField(t, ch, "v") != 1000 {
		t.Errorf("after an oversized message, a new connection got %+v", ch)
	}
}

// TestSubscriptions: table filters, "every table" by omission or [], numeric ids,
// filtered catch-up and unsubscribe.
func TestSubscriptions(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `
CREATE TABLE a(id INTEGER PRIMARY KEY, n INT);
CREATE TABLE b(id INTEGER PRIMARY KEY, n INT);`)
	c := srv.Dial(t)
	c.Subscribe("A", []string{"a"}, nil, "")
	c.Subscribe("B", []string{"b"}, nil, "")
	c.Subscribe("all", nil, nil, "")
	c.Subscribe("empty", []string{}, nil, "")
	c.Send(`{"type":"subscribe","id":7,"tables":["a"]}`)
	if m := c.Next(timeout); m.Type != protocol.TypeSubscribed || string(m.RawID) != "7" {
		t.Fatalf("subscribe with numeric id 7: got %s, want subscribed with id 7 (a number)", m.Raw)
	}

	testenv.SQLite(t, db, `
INSERT INTO a(n) VALUES(1);
INSERT INTO b(n) VALUES(2);
INSERT INTO a(n) VALUES(3);
INSERT INTO b(n) VALUES(4);`)
	for _, id := range []string{"all", "empty"} {
		got := c.WaitChanges(id, 4, timeout)
		testenv.AssertContiguous(t, got, 1)
	}
	if got := c.WaitChanges("A", 2, timeout); !slices.Equal(seqs(got), []int64{1, 3}) || got[0].Table != "a" {
		t.Errorf("A got %v", seqs(got))
	}
	if got := c.WaitChanges("B", 2, timeout); !slices.Equal(seqs(got), []int64{2, 4}) || got[0].Table != "b" {
		t.Errorf("B got %v", seqs(got))
	}
	if got := c.WaitChanges("7", 2, timeout); !slices.Equal(seqs(got), []int64{1, 3}) {
		t.Errorf("numeric id 7 got %v", seqs(got))
	}

	// Filtered catch-up on a second connection.
	c2 := srv.Dial(t)
	c2.Subscribe("bc", []string{"b"}, testenv.Int64(0), "")
	if got := c2.WaitChanges("bc", 2, timeout); !slices.Equal(seqs(got), []int64{2, 4}) {
		t.Errorf("filtered catch-up got %v, want [2 4]", seqs(got))
	}

	c.Unsubscribe("A")
	c.Send(`{"type":"unsubscribe","id":7}`)
	if m := c.Next(timeout); m.Type != protocol.TypeUnsubscribed || string(m.RawID) != "7" {
		t.Fatalf("unsubscribe numeric id 7: got %s, want unsubscribed with id 7", m.Raw)
	}
	testenv.SQLite(t, db, "INSERT INTO a(n) VALUES(5); INSERT INTO b(n) VALUES(6);")
	if got := c.WaitChanges("all", 2, timeout); !slices.Equal(seqs(got), []int64{5, 6}) {
		t.Errorf("all got %v, want [5 6]", seqs(got))
	}
	c.WaitChanges("empty", 2, timeout)
	if got := c.WaitChanges("B", 1, timeout); got[0].Seq != 6 {
		t.Errorf("B got %v, want [6]", seqs(got))
	}
	for _, id := range []string{"A", "7"} {
		if got := c.Take(id); len(got) > 0 {
			t.Errorf("unsubscribed %s still received %v", id, seqs(got))
		}
	}
	// Unsubscribing again is an error; the id can be reused.
	c.Send(`{"type":"unsubscribe","id":"A"}`)
	if m := c.Next(timeout); m.Type != protocol.TypeError || m.Code != "unknown_subscription" {
		t.Errorf("second unsubscribe: got %s, want unknown_subscription", m.Raw)
	}
	c.Subscribe("A", []string{"a"}, testenv.Int64(4), "")
	if got := c.WaitChanges("A", 1, timeout); got[0].Seq != 5 {
		t.Errorf("re-subscribed A since 4 got %v, want [5]", seqs(got))
	}
}

// TestResetFutureAndStream: since beyond head → reset future; another stream →
// reset stream; after a reset the id is free again; since == head is fine.
func TestResetFutureAndStream(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	testenv.SQLite(t, db, inserts("t", "v", 1, 5))
	c := srv.Dial(t)
	if c.Hello.Head != 5 || c.Hello.Oldest != 1 {
		t.Fatalf("hello = %+v, want head 5 oldest 1", c.Hello)
	}
	check := func(m testenv.Msg, reason string) {
		t.Helper()
		if m.Type != protocol.TypeReset || m.Reason != reason || m.Stream != c.Hello.Stream || m.Head != 5 {
			t.Errorf("got %s, want reset %s with stream %q head 5", m.Raw, reason, c.Hello.Stream)
		}
	}
	check(c.SubscribeReply("f", nil, testenv.Int64(105), ""), protocol.ResetFuture)
	check(c.SubscribeReply("f", nil, testenv.Int64(6), ""), protocol.ResetFuture)
	check(c.SubscribeReply("s", nil, testenv.Int64(0), "deadbeef"), protocol.ResetStream)
	check(c.SubscribeReply("s", nil, nil, "deadbeef"), protocol.ResetStream)

	c.Subscribe("f", nil, testenv.Int64(5), "")             // since == head
	c.Subscribe("s", nil, testenv.Int64(0), c.Hello.Stream) // matching stream
	c.Subscribe("g", []string{"t"}, testenv.Int64(3), c.Hello.Stream)
	if got := c.WaitChanges("s", 5, timeout); !slices.Equal(seqs(got), []int64{1, 2, 3, 4, 5}) {
		t.Errorf("since 0 got %v", seqs(got))
	}
	if got := c.WaitChanges("g", 2, timeout); !slices.Equal(seqs(got), []int64{4, 5}) {
		t.Errorf("since 3 got %v", seqs(got))
	}
	expectMarker(t, c, "f", db, "t", "v", 6)
}

// TestResetPruned: retention removed what a client's since needs → reset pruned;
// since == oldest-1 still works and yields exactly the retained changes.
func TestResetPruned(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`,
		"--retain-count", "10", "--retain-interval", "50ms")
	testenv.SQLite(t, db, inserts("t", "v", 1, 100))
	var c *testenv.Client
	testenv.WaitFor(t, timeout, "hello.oldest to reach 91", func() bool {
		if c != nil {
			c.Close()
		}
		c = srv.Dial(t)
		return c.Hello.Oldest >= 91
	})
	if c.Hello.Head != 100 || c.Hello.Oldest != 91 {
		t.Fatalf("hello = %+v, want head 100 and oldest 91 with --retain-count 10", c.Hello)
	}
	for _, since := range []int64{1, 0, 89} {
		m := c.SubscribeReply("p", nil, &since, "")
		if m.Type != protocol.TypeReset || m.Reason != protocol.ResetPruned || m.Head != 100 || m.Stream != c.Hello.Stream {
			t.Errorf("since %d: got %s, want reset pruned head 100", since, m.Raw)
		}
	}
	c.Subscribe("p", nil, testenv.Int64(90), "")
	got := c.WaitChanges("p", 10, timeout)
	testenv.AssertContiguous(t, got, 91)
	expectMarker(t, c, "p", db, "t", "v", 101)
}

// TestRetention: count- and age-based retention keep the changelog bounded, move
// hello.oldest, and never reuse a seq, even after the log was emptied.
func TestRetention(t *testing.T) {
	t.Parallel()
	t.Run("count", func(t *testing.T) {
		t.Parallel()
		db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`,
			"--retain-count", "10", "--retain-interval", "50ms")
		for round := range 3 {
			testenv.SQLite(t, db, inserts("t", "v", round*100, 100))
			head := int64(round+1) * 100
			testenv.WaitFor(t, timeout, "changelog pruned to 10 rows", func() bool {
				return testenv.SQLiteInt(t, db, "SELECT count(*) FROM sqlws_changes;") <= 10
			})
			out := strings.TrimSpace(testenv.SQLite(t, db, "SELECT count(*), min(seq), max(seq) FROM sqlws_changes;"))
			if want := fmt.Sprintf("10|%d|%d", head-9, head); out != want {
				t.Fatalf("round %d: changelog count|min|max = %s, want %s (the newest 10)", round, out, want)
			}
			c := srv.Dial(t)
			if c.Hello.Oldest != head-9 || c.Hello.Head != head {
				t.Fatalf("round %d: hello = %+v, want oldest %d head %d", round, c.Hello, head-9, head)
			}
			c.Close()
		}
	})
	t.Run("age", func(t *testing.T) {
		t.Parallel()
		db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`,
			"--retain-age", "300ms", "--retain-interval", "50ms")
		testenv.SQLite(t, db, inserts("t", "v", 1, 20))
		// Everything ages out but the newest change, which holds the head: seq has
		// no AUTOINCREMENT counter, so the newest row is what keeps it from going back.
		testenv.WaitFor(t, timeout, "changelog pruned by age to its newest change", func() bool {
			return testenv.SQLiteInt(t, db, "SELECT count(*) FROM sqlws_changes;") == 1
		})
		c := srv.Dial(t)
		if c.Hello.Head != 20 || c.Hello.Oldest != 20 {
			t.Fatalf("hello with the log pruned to its newest = %+v, want head 20 oldest 20", c.Hello)
		}
		if m := c.SubscribeReply("old", nil, testenv.Int64(18), ""); m.Type != protocol.TypeReset || m.Reason != protocol.ResetPruned {
			t.Errorf("since 18 with everything but 20 pruned: got %s, want reset pruned", m.Raw)
		}
		c.Subscribe("a", nil, testenv.Int64(20), "")
		testenv.SQLite(t, db, "INSERT INTO t(v) VALUES(-1);")
		if ch := c.WaitChanges("a", 1, timeout)[0]; ch.Seq != 21 {
			t.Errorf("first change after the log was emptied has seq %d, want 21 (seq is never reused)", ch.Seq)
		}
	})
}

// TestStreamID: the stream id is the one stored in sqlws_meta, stable across graceful
// restarts and crashes, different for another database and after uninstall.
func TestStreamID(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	c := srv.Dial(t)
	stream := c.Hello.Stream
	if stream == "" {
		t.Fatal("empty stream id")
	}
	if meta := strings.TrimSpace(testenv.SQLite(t, db, "SELECT value FROM sqlws_meta WHERE key = 'stream_id';")); meta != stream {
		t.Errorf("hello.stream %q differs from sqlws_meta's stream_id %q", stream, meta)
	}
	testenv.SQLite(t, db, inserts("t", "v", 1, 3))
	c.Close()

	srv = srv.Restart(t)
	c = srv.Dial(t)
	if c.Hello.Stream != stream || c.Hello.Head != 3 {
		t.Errorf("after restart hello = %+v, want stream %q head 3", c.Hello, stream)
	}
	srv.Kill()
	srv = srv.Restart(t)
	c = srv.Dial(t)
	if c.Hello.Stream != stream {
		t.Errorf("after kill -9 and restart stream = %q, want %q", c.Hello.Stream, stream)
	}
	c.Subscribe("a", nil, testenv.Int64(3), stream)

	_, other := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	if s := other.Dial(t).Hello.Stream; s == stream {
		t.Errorf("two databases share stream id %q", s)
	}
}

// TestShutdownSignals: SIGTERM and SIGINT close WebSockets with 1001 and exit 0
// within a few seconds.
func TestShutdownSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
			c := srv.Dial(t)
			c.Subscribe("a", nil, nil, "")
			idle := srv.Dial(t) // no subscription
			testenv.SQLite(t, db, "INSERT INTO t(v) VALUES(1);")
			c.WaitChanges("a", 1, timeout)
			began := time.Now()
			code := srv.Signal(sig, 10*time.Second)
			took := time.Since(began)
			if code != 0 {
				t.Errorf("exit code after %v = %d, want 0", sig, code)
			}
			if took > 5*time.Second {
				t.Errorf("took %v to exit after %v, want a few seconds at most", took, sig)
			}
			for _, cl := range []*testenv.Client{c, idle} {
				if code, err := cl.WaitClosed(timeout); code != websocket.StatusGoingAway {
					t.Errorf("client connection ended with code %d (%v), want 1001", code, err)
				}
			}
			if out := strings.TrimSpace(testenv.SQLite(t, db, "PRAGMA integrity_check;")); out != "ok" {
				t.Errorf("integrity_check after shutdown: %s", out)
			}
		})
	}
}

// TestSchemaChanges: a table created while serving is captured (once its triggers
// exist) and subscribable; a column added while serving appears in later events.
func TestSchemaChanges(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE base(id INTEGER PRIMARY KEY, v INT);
INSERT INTO base(id, v) VALUES(1, 1);`)
	c := srv.Dial(t)
	c.Subscribe("all", nil, nil, "")
	c.Subscribe("base", []string{"base"}, nil, "")

	// A new table.
	testenv.SQLite(t, db, `CREATE TABLE "fresh one"(id INTEGER PRIMARY KEY, name TEXT);`)
	testenv.WaitTriggers(t, db, "fresh one")
	testenv.SQLite(t, db, `INSERT INTO "fresh one"(name) VALUES('hi');`)
	ch := c.WaitChanges("all", 1, timeout)[0]
	checkChange(t, ch, "fresh one", "insert", `{"id":1}`, "null", `{"id":1,"name":"hi"}`)
	c.Subscribe("fresh", []string{"fresh one"}, nil, "")
	testenv.SQLite(t, db, `UPDATE "fresh one" SET name = 'ho';`)
	checkChange(t, c.WaitChanges("fresh", 1, timeout)[0], "fresh one", "update", `{"id":1}`, `{"id":1,"name":"hi"}`, `{"id":1,"name":"ho"}`)
	c.WaitChanges("all", 1, timeout)

	// A new column. Writes racing the trigger regeneration may still use the old
	// triggers, so insert one row at a time until a change carries the column; every
	// row must produce a change.
	testenv.SQLite(t, db, `ALTER TABLE base ADD COLUMN extra TEXT DEFAULT 'dflt';`)
	deadline := time.Now().Add(timeout)
	for v := 100; ; v++ {
		testenv.SQLite(t, db, fmt.Sprintf("INSERT INTO base(v) VALUES(%d);", v))
		ch := c.WaitChanges("base", 1, timeout)[0]
		c.WaitChanges("all", 1, timeout)
		if intField(t, ch, "v") != int64(v) {
			t.Fatalf("got %+v, want the insert of v=%d", ch, v)
		}
		if _, ok := obj(t, ch.New)["extra"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no change carried the column added with ALTER TABLE within %v", timeout)
		}
	}
	testenv.SQLite(t, db, `
UPDATE base SET v = 2 WHERE id = 1;
INSERT INTO base(id, v, extra) VALUES(50, 5, 'x');
DELETE FROM base WHERE id = 50;`)
	got := c.WaitChanges("base", 3, timeout)
	testenv.AssertContiguous(t, got, -1)
	checkChange(t, got[0], "base", "update", `{"id":1}`, `{"id":1,"v":1,"extra":"dflt"}`, `{"id":1,"v":2,"extra":"dflt"}`)
	checkChange(t, got[1], "base", "insert", `{"id":50}`, "null", `{"id":50,"v":5,"extra":"x"}`)
	checkChange(t, got[2], "base", "delete", `{"id":50}`, `{"id":50,"v":5,"extra":"x"}`, "null")
	all := c.WaitChanges("all", 3, timeout)
	if !slices.Equal(seqs(all), seqs(got)) {
		t.Errorf("all got %v, base got %v", seqs(all), seqs(got))
	}
}

// TestTablesFlag: with --tables only the named tables are tracked.
func TestTablesFlag(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `
CREATE TABLE a(id INTEGER PRIMARY KEY, n INT);
CREATE TABLE b(id INTEGER PRIMARY KEY, n INT);`, "--tables", "a")
	c := srv.Dial(t)
	if m := c.SubscribeReply("b", []string{"b"}, nil, ""); m.Type != protocol.TypeError || m.Code != "unknown_table" {
		t.Errorf("subscribe to an untracked table: got %s, want error unknown_table", m.Raw)
	}
	c.Subscribe("all", nil, nil, "")
	testenv.SQLite(t, db, "INSERT INTO b(n) VALUES(1); INSERT INTO a(n) VALUES(2);")
	ch := c.WaitChanges("all", 1, timeout)[0]
	if ch.Table != "a" || ch.Seq != 1 {
		t.Errorf("first change = %+v, want seq 1 on a (b is not tracked)", ch)
	}
	if n := testenv.SQLiteInt(t, db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'b';"); n != 0 {
		t.Errorf("untracked table b has %d triggers", n)
	}
	expectMarker(t, c, "all", db, "a", "n", 2)
}

// TestMigrateAndUninstall: migrate up creates the sqlws tables; uninstall removes
// every sqlws trigger and table and leaves user data alone; serving again starts a
// new stream.
func TestMigrateAndUninstall(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT); INSERT INTO t(v) VALUES(1);`)
	if out, errs, code := testenv.RunBinary(t, "migrate", "up", "--db", db); code != 0 {
		t.Fatalf("migrate up: exit %d\n%s%s", code, out, errs)
	}
	if n := testenv.SQLiteInt(t, db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('sqlws_changes', 'sqlws_meta');"); n != 2 {
		t.Errorf("after migrate up: %d of sqlws_changes, sqlws_meta exist", n)
	}
	if out, errs, code := testenv.RunBinary(t, "migrate", "status", "--db", db); code != 0 {
		t.Errorf("migrate status: exit %d\n%s%s", code, out, errs)
	}

	srv := testenv.StartServer(t, db)
	c := srv.Dial(t)
	stream := c.Hello.Stream
	c.Subscribe("a", nil, nil, "")
	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES(2);")
	c.WaitChanges("a", 1, timeout)
	if code := srv.Stop(); code != 0 {
		t.Errorf("stop: exit %d", code)
	}

	if out, errs, code := testenv.RunBinary(t, "uninstall", "--db", db); code != 0 {
		t.Fatalf("uninstall: exit %d\n%s%s", code, out, errs)
	}
	if left := strings.TrimSpace(testenv.SQLite(t, db,
		"SELECT type || ' ' || name FROM sqlite_master WHERE name LIKE 'sqlws%' OR (type = 'trigger');")); left != "" {
		t.Errorf("after uninstall these remain:\n%s", left)
	}
	if out := strings.TrimSpace(testenv.SQLite(t, db, "SELECT group_concat(v) FROM t;")); out != "1,2" {
		t.Errorf("user data after uninstall: %q, want 1,2", out)
	}
	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES(3);") // works without sqlws objects

	srv = testenv.StartServer(t, db)
	c = srv.Dial(t)
	if c.Hello.Stream == stream || c.Hello.Head != 0 {
		t.Errorf("after uninstall and serve: hello = %+v, want a new stream (old %q) and head 0", c.Hello, stream)
	}
	if m := c.SubscribeReply("old", nil, testenv.Int64(1), stream); m.Type != protocol.TypeReset || m.Reason != protocol.ResetStream {
		t.Errorf("resume with the pre-uninstall stream: got %s, want reset stream", m.Raw)
	}
}

// TestSchemaRenames: renaming a column or a table, and dropping and re-creating a
// table with another shape, while serving: later events use the new names and shape,
// and no write goes uncaptured meanwhile.
func TestSchemaRenames(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE r(id INTEGER PRIMARY KEY, oldcol TEXT);`)
	c := srv.Dial(t)
	c.Subscribe("all", nil, nil, "")

	// until inserts rows one at a time (each must produce a change) until ok accepts
	// the change.
	until := func(what, insert string, ok func(models.Change) bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for v := 1; ; v++ {
			testenv.SQLite(t, db, fmt.Sprintf(insert, v))
			ch := c.WaitChanges("all", 1, timeout)[0]
			if ch.Op != models.OpInsert {
				t.Fatalf("%s: got %+v, want an insert", what, ch)
			}
			if ok(ch) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reflected in changes within %v; last change %+v", what, timeout, ch)
			}
		}
	}

	testenv.SQLite(t, db, `ALTER TABLE r RENAME COLUMN oldcol TO newcol;`)
	until("RENAME COLUMN", `INSERT INTO r(newcol) VALUES('v%d');`, func(ch models.Change) bool {
		row := obj(t, ch.New)
		_, hasNew := row["newcol"]
		_, hasOld := row["oldcol"]
		return hasNew && !hasOld
	})

	testenv.SQLite(t, db, `ALTER TABLE r RENAME TO r2;`)
	until("RENAME TO", `INSERT INTO r2(newcol) VALUES('w%d');`, func(ch models.Change) bool {
		return ch.Table == "r2"
	})
	c.Subscribe("r2", []string{"r2"}, nil, "")
	if m := c.SubscribeReply("r", []string{"r"}, nil, ""); m.Type != protocol.TypeError || m.Code != "unknown_table" {
		t.Errorf("subscribe to the renamed-away table: got %s, want unknown_table", m.Raw)
	}

	testenv.SQLite(t, db, `DROP TABLE r2; CREATE TABLE r2(k TEXT PRIMARY KEY, other INT) WITHOUT ROWID;`)
	testenv.WaitTriggers(t, db, "r2")
	testenv.SQLite(t, db, `INSERT INTO r2 VALUES('key', 42);`)
	checkChange(t, c.WaitChanges("all", 1, timeout)[0], "r2", "insert", `{"k":"key"}`, "null", `{"k":"key","other":42}`)
}

// TestServeStdout: serve prints exactly one line to stdout, the listening line with
// the real address; logs go to stderr.
func TestServeStdout(t *testing.T) {
	t.Parallel()
	_, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[1-9][0-9]*$`).MatchString(srv.URL) {
		t.Errorf("listening URL %q, want http://127.0.0.1:PORT", srv.URL)
	}
	srv.Dial(t).Close()
	if code := srv.Stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if out, want := srv.Stdout(), testenv.ListeningPrefix+srv.URL+"\n"; out != want {
		t.Errorf("stdout of serve = %q, want exactly one line %q", out, want)
	}
}
