package client_test

// Tests against real servers: the sqlws binary, run by internal/testenv on
// temporary databases that the real sqlite3 CLI writes to.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlws/sqlws/client"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

const timeout = testenv.Timeout

func start(t *testing.T, schema string, args ...string) (string, *testenv.Server) {
	t.Helper()
	db := testenv.NewDB(t, schema)
	return db, testenv.StartServer(t, db, args...)
}

func dial(t *testing.T, url string, o *client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := client.Dial(ctx, url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func subscribe(t *testing.T, c *client.Client, o client.SubscribeOptions) *client.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := c.Subscribe(ctx, o)
	if err != nil {
		t.Fatalf("subscribe %+v: %v", o, err)
	}
	return s
}

// until returns the changes s delivers up to and including the first with seq ≥
// seq; it fails the test if that takes longer than timeout or the subscription ends.
func until(t *testing.T, s *client.Subscription, seq int64) []client.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []client.Change
	for len(got) == 0 || got[len(got)-1].Seq < seq {
		b, err := s.Next(ctx)
		if err != nil {
			last := int64(-1)
			if len(got) > 0 {
				last = got[len(got)-1].Seq
			}
			t.Fatalf("waiting for seq %d (have %d changes, last %d): %v", seq, len(got), last, err)
		}
		got = append(got, b...)
	}
	return got
}

// assertContiguous fails unless the changes' seqs run first, first+1, … without a
// gap or a repeat.
func assertContiguous(t *testing.T, got []client.Change, first int64) {
	t.Helper()
	for i, c := range got {
		if c.Seq != first+int64(i) {
			t.Fatalf("change %d has seq %d, want %d (no gap, no duplicate)", i, c.Seq, first+int64(i))
		}
	}
}

func decode(t *testing.T, c client.Change) models.Change {
	t.Helper()
	m, err := c.Decode()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// intCol returns an integer column of a change's new (or, for a delete, old) image.
func intCol(t *testing.T, c client.Change, col string) int64 {
	t.Helper()
	m := decode(t, c)
	img := m.New
	if string(img) == "null" {
		img = m.Old
	}
	var row map[string]json.RawMessage
	if err := json.Unmarshal(img, &row); err != nil {
		t.Fatalf("seq %d: image %s: %v", c.Seq, img, err)
	}
	n, err := strconv.ParseInt(string(row[col]), 10, 64)
	if err != nil {
		t.Fatalf("seq %d: column %s = %s", c.Seq, col, row[col])
	}
	return n
}

// expectMarker writes a marker row (col = -1) and checks that it is the next change
// s delivers, with seq wantSeq: nothing else was pending.
func expectMarker(t *testing.T, s *client.Subscription, db, table, col string, wantSeq int64) {
	t.Helper()
	if st := s.Stats(); st.Buffered != 0 {
		t.Fatalf("%d unexpected changes buffered", st.Buffered)
	}
	testenv.SQLite(t, db, fmt.Sprintf("INSERT INTO %s(%s) VALUES(-1);", table, col))
	got := until(t, s, 1)
	if got[0].Seq != wantSeq || got[0].Table != table || intCol(t, got[0], col) != -1 {
		t.Fatalf("next change is seq %d %s %s, want the marker at seq %d", got[0].Seq, got[0].Table, got[0].Raw, wantSeq)
	}
}

func inserts(table, col string, from, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "INSERT INTO %s(%s) VALUES(%d);\n", table, col, from+i)
	}
	return b.String()
}

func maxSeq(t *testing.T, db string) int64 {
	t.Helper()
	return testenv.SQLiteInt(t, db, "SELECT coalesce(max(seq), 0) FROM sqlws_changes;")
}

// statusLog records OnStatus calls.
type statusLog struct {
	mu  sync.Mutex
	all []client.Status
}

func (l *statusLog) add(s client.Status) {
	l.mu.Lock()
	l.all = append(l.all, s)
	l.mu.Unlock()
}

func (l *statusLog) list() []client.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]client.Status(nil), l.all...)
}

// TestSubscribeChanges: inserts, updates and deletes made with the sqlite3 CLI reach
// a subscription in order, with the record as the server sent it; table filters
// hold.
func TestSubscribeChanges(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INT);
CREATE TABLE other(id INTEGER PRIMARY KEY, v INT);`)
	var st statusLog
	c := dial(t, srv.URL, &client.Options{OnStatus: st.add}) // the server's root URL: /ws is added
	h := c.Hello()
	if h.Version != 1 || h.Stream == "" || h.Head != 0 || h.Oldest != 1 || c.Stream() != h.Stream || c.State() != client.StateOpen {
		t.Fatalf("hello = %+v, stream %q, state %v", h, c.Stream(), c.State())
	}
	todos := subscribe(t, c, client.SubscribeOptions{Tables: []string{"todos"}})
	all := subscribe(t, c, client.SubscribeOptions{ID: "everything"})
	if todos.ID() == "" || todos.ID() == all.ID() || all.ID() != "everything" || todos.LastSeq() != 0 || todos.Head() != 0 {
		t.Fatalf("ids %q %q, lastSeq %d, head %d", todos.ID(), all.ID(), todos.LastSeq(), todos.Head())
	}

	testenv.SQLite(t, db, `INSERT INTO todos(title, done) VALUES ('milk', 0);
INSERT INTO other(v) VALUES (7);
UPDATE todos SET done = 1 WHERE id = 1;
DELETE FROM todos WHERE id = 1;`)
	got := until(t, todos, 4)
	if len(got) != 3 || got[0].Seq != 1 || got[1].Seq != 3 || got[2].Seq != 4 {
		t.Fatalf("todos subscription got seqs %v, want 1, 3, 4", seqs(got))
	}
	for i, want := range []struct{ op, old, new string }{
		{models.OpInsert, `null`, `{"id":1,"title":"milk","done":0}`},
		{models.OpUpdate, `{"id":1,"title":"milk","done":0}`, `{"id":1,"title":"milk","done":1}`},
		{models.OpDelete, `{"id":1,"title":"milk","done":1}`, `null`},
	} {
		m := decode(t, got[i])
		if got[i].Table != "todos" || got[i].Op != want.op || m.Op != want.op || string(m.PK) != `{"id":1}` ||
			string(m.Old) != want.old || string(m.New) != want.new || m.TS == 0 || m.Seq != got[i].Seq {
			t.Errorf("change %d = %s (decoded %+v), want %s old %s new %s", i, got[i].Raw, m, want.op, want.old, want.new)
		}
	}
	everything := until(t, all, 4)
	assertContiguous(t, everything, 1)
	if everything[1].Table != "other" || everything[1].Op != models.OpInsert {
		t.Errorf("seq 2 = %s, want the insert into other", everything[1].Raw)
	}
	if todos.LastSeq() != 4 || all.LastSeq() != 4 {
		t.Errorf("LastSeq = %d, %d, want 4", todos.LastSeq(), all.LastSeq())
	}
	expectMarker(t, all, db, "other", "v", 5)
	if s := st.list(); len(s) != 1 || s[0].State != client.StateOpen || s[0].Hello.Stream != h.Stream {
		t.Errorf("status events = %+v, want one StateOpen with the hello", s)
	}
}

func seqs(cs []client.Change) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = c.Seq
	}
	return out
}

// TestSince: a subscription with Since gets every change after it, then live ones.
func TestSince(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	testenv.SQLite(t, db, inserts("t", "v", 1, 30))
	c := dial(t, srv.WSURL(), nil)
	if h := c.Hello(); h.Head != 30 {
		t.Fatalf("hello.head = %d, want 30", h.Head)
	}
	from0 := subscribe(t, c, client.SubscribeOptions{Since: client.Seq(0)})
	from20 := subscribe(t, c, client.SubscribeOptions{Since: client.Seq(20), Tables: []string{"t"}})
	live := subscribe(t, c, client.SubscribeOptions{})
	if live.LastSeq() != 30 || live.Head() != 30 || from20.LastSeq() != 20 {
		t.Fatalf("live: LastSeq %d Head %d; from20: LastSeq %d", live.LastSeq(), live.Head(), from20.LastSeq())
	}
	a := until(t, from0, 30)
	assertContiguous(t, a, 1)
	for i, ch := range a {
		if intCol(t, ch, "v") != int64(i+1) {
			t.Fatalf("seq %d has v=%d", ch.Seq, intCol(t, ch, "v"))
		}
	}
	assertContiguous(t, until(t, from20, 30), 21)
	testenv.SQLite(t, db, inserts("t", "v", 31, 5))
	for _, s := range []*client.Subscription{from0, from20, live} {
		assertContiguous(t, until(t, s, 35), 31)
	}
	expectMarker(t, live, db, "t", "v", 36)
}

// TestSubscribeRefused: refusals come back from Subscribe as typed errors, and the
// client carries on.
func TestSubscribeRefused(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	testenv.SQLite(t, db, inserts("t", "v", 1, 3))
	c := dial(t, srv.WSURL(), &client.Options{Stream: "some-other-database"})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	_, err := c.Subscribe(ctx, client.SubscribeOptions{Tables: []string{"t", "nope"}})
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "unknown_table" || !strings.Contains(se.Message, "nope") {
		t.Fatalf("subscribe to an unknown table: %v, want a ServerError unknown_table", err)
	}

	// The stream given in Options is not the server's: reset, and the client adopts
	// the server's stream.
	_, err = c.Subscribe(ctx, client.SubscribeOptions{Since: client.Seq(0)})
	var re *client.ResetError
	if !errors.As(err, &re) || re.Reason != protocol.ResetStream || re.Head != 3 || re.Stream != c.Hello().Stream {
		t.Fatalf("subscribe with another stream: %v, want a reset (stream)", err)
	}
	if c.Stream() != c.Hello().Stream {
		t.Fatalf("after a stream reset the client resumes against %q, want the server's %q", c.Stream(), c.Hello().Stream)
	}
	_, err = c.Subscribe(ctx, client.SubscribeOptions{Since: client.Seq(4)})
	if !errors.As(err, &re) || re.Reason != protocol.ResetFuture {
		t.Fatalf("subscribe since beyond the head: %v, want a reset (future)", err)
	}

	s := subscribe(t, c, client.SubscribeOptions{ID: "x", Since: client.Seq(0)})
	if _, err := c.Subscribe(ctx, client.SubscribeOptions{ID: "x"}); !errors.As(err, &se) || se.Code != "duplicate_id" {
		t.Fatalf("a second subscription x: %v, want duplicate_id", err)
	}
	assertContiguous(t, until(t, s, 3), 1)
	expectMarker(t, s, db, "t", "v", 4)

	if _, err := c.Subscribe(ctx, client.SubscribeOptions{Since: client.Seq(-1)}); err == nil {
		t.Error("Since -1 accepted")
	}
	// Filters are passed through, and the server's verdict on them comes back.
	if _, err := c.Subscribe(ctx, client.SubscribeOptions{Tables: []string{"t"}, Where: "v > 0"}); !errors.As(err, &se) || se.Code != "bad_filter" {
		t.Fatalf("a where that does not parse: %v, want bad_filter", err)
	}
	f := subscribe(t, c, client.SubscribeOptions{Tables: []string{"t"}, Where: "v=lt.0", Select: "id,v"}) // the marker is -1
	expectMarker(t, f, db, "t", "v", 5)
}

// TestUnsubscribe: Next reports ErrUnsubscribed at once, and once Unsubscribe has
// returned the id can be used again.
func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	c := dial(t, srv.WSURL(), nil)
	s := subscribe(t, c, client.SubscribeOptions{ID: "u"})
	testenv.SQLite(t, db, inserts("t", "v", 1, 2))
	testenv.WaitFor(t, timeout, "the changes to be buffered", func() bool { return s.Stats().Buffered == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Next(ctx); err != client.ErrUnsubscribed || len(b) != 0 {
		t.Fatalf("Next after Unsubscribe = %d changes, %v; want ErrUnsubscribed", len(b), err)
	}
	if err := s.Unsubscribe(ctx); err != nil {
		t.Fatalf("second Unsubscribe: %v", err)
	}
	again := subscribe(t, c, client.SubscribeOptions{ID: "u", Since: client.Seq(1)})
	assertContiguous(t, until(t, again, 2), 2)
	expectMarker(t, again, db, "t", "v", 3)
}

// TestHeaders: Options.HTTPHeader reaches the server: a browser-like Origin the
// server does not allow is refused at the handshake (Dial fails at once), and
// allowed once the server is told to.
func TestHeaders(t *testing.T) {
	t.Parallel()
	_, strict := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY);`)
	_, open := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY);`, "--allowed-origins", "app.example")
	o := &client.Options{HTTPHeader: http.Header{"Origin": {"https://app.example"}, "Authorization": {"Bearer x"}}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if c, err := client.Dial(ctx, strict.WSURL(), o); err == nil {
		c.Close()
		t.Fatal("Dial with a foreign Origin succeeded on a server that does not allow it")
	} else if !strings.Contains(err.Error(), "403") {
		t.Errorf("Dial error = %v, want the handshake's 403", err)
	}
	c := dial(t, open.WSURL(), o)
	subscribe(t, c, client.SubscribeOptions{})
}

// TestDialErrors: Dial reports a bad URL or a server that is not there, without
// retrying.
func TestDialErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, u := range []string{"ftp://127.0.0.1/ws", "127.0.0.1:1", "ws://127.0.0.1:1/ws"} {
		if c, err := client.Dial(ctx, u, nil); err == nil {
			c.Close()
			t.Errorf("Dial(%q) succeeded", u)
		}
	}
}

// restartSameAddr starts a server on old's database and address (old must have
// exited), with args, as a restarted deployment would.
func restartSameAddr(t *testing.T, old *testenv.Server, args ...string) *testenv.Server {
	t.Helper()
	s := testenv.StartServer(t, old.DB, append(args, "--addr", old.Addr)...)
	if s.Addr != old.Addr {
		t.Fatalf("restarted server listens on %s, want %s", s.Addr, old.Addr)
	}
	return s
}

// cliWriter inserts rows n = 1, 2, … with the sqlite3 CLI, one process and one
// transaction per row, until stopped.
type cliWriter struct {
	n    atomic.Int64
	stop chan struct{}
	done chan struct{}
	err  error
}

func startWriter(t *testing.T, db, table, col string) *cliWriter {
	w := &cliWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := int64(1); ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			if _, err := testenv.RunSQLite(db, fmt.Sprintf("INSERT INTO %s(%s) VALUES(%d);", table, col, i)); err != nil {
				w.err = err
				return
			}
			w.n.Store(i)
		}
	}()
	t.Cleanup(func() { w.finish(t) })
	return w
}

// finish stops the writer and returns how many rows it wrote.
func (w *cliWriter) finish(t *testing.T) int64 {
	t.Helper()
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		t.Fatal("writer did not stop")
	}
	if w.err != nil {
		t.Fatal(w.err)
	}
	return w.n.Load()
}

func (w *cliWriter) waitFor(t *testing.T, n int64) {
	t.Helper()
	testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("the writer to reach row %d", n), func() bool {
		select {
		case <-w.done:
			t.Fatalf("writer stopped: %v", w.err)
		default:
		}
		return w.n.Load() >= n
	})
}

// TestRestartResume: the server goes away mid-stream (SIGKILL, or a graceful
// SIGTERM) while a CLI writer keeps writing, and comes back on the same address.
// The client reconnects by itself and the consumer sees every change exactly once:
// no gap, no duplicate, the same as the changelog.
func TestRestartResume(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"kill", "term"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			db, srv := start(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT);`)
			var st statusLog
			c := dial(t, srv.WSURL(), &client.Options{OnStatus: st.add, MaxDelay: time.Second})
			stream := c.Hello().Stream
			s := subscribe(t, c, client.SubscribeOptions{Tables: []string{"items"}, Since: client.Seq(0)})
			w := startWriter(t, db, "items", "n")

			got := until(t, s, 20)
			if mode == "kill" {
				srv.Kill()
			} else if code := srv.Stop(); code != 0 {
				t.Fatalf("server exited with %d on SIGTERM", code)
			}
			testenv.WaitFor(t, timeout, "the client to notice", func() bool { return c.State() == client.StateReconnecting })
			w.waitFor(t, w.n.Load()+20) // writes while the server is down
			restartSameAddr(t, srv)
			testenv.WaitFor(t, timeout, "the client to reconnect", func() bool { return c.State() == client.StateOpen })
			w.waitFor(t, w.n.Load()+20) // and after it is back
			total := w.finish(t)

			head := maxSeq(t, db)
			got = append(got, until(t, s, head)...)
			assertContiguous(t, got, 1)
			if int64(len(got)) != total || head != total {
				t.Fatalf("received %d changes (changelog head %d) for %d CLI inserts", len(got), head, total)
			}
			for i, ch := range got {
				if ch.Op != models.OpInsert || intCol(t, ch, "n") != int64(i+1) {
					t.Fatalf("change %d = %s, want the insert of n=%d", i, ch.Raw, i+1)
				}
			}
			if stt := s.Stats(); stt.Dropped != 0 || stt.Delivered != total {
				t.Errorf("stats = %+v: the resume should send exactly what was missed", stt)
			}
			expectMarker(t, s, db, "items", "n", head+1)

			// Status: open, reconnecting (attempts while down), open again on the
			// same stream.
			events := st.list()
			if events[0].State != client.StateOpen {
				t.Errorf("first status = %+v, want open", events[0])
			}
			var reconnecting, reopened bool
			for _, e := range events[1:] {
				switch e.State {
				case client.StateReconnecting:
					if !reconnecting {
						want := -1 // a killed server sends no close frame
						if mode == "term" {
							want = 1001 // going away
						}
						if int(e.Code) != want || e.Err == nil || e.Attempt != 1 || e.Delay < 0 || e.Delay >= 250*time.Millisecond {
							t.Errorf("first reconnecting status = %+v, want code %d, attempt 1, a delay below 250ms", e, want)
						}
					}
					reconnecting = true
				case client.StateOpen:
					reopened = reconnecting
					if e.Hello.Stream != stream {
						t.Errorf("reopened on stream %q, want %q", e.Hello.Stream, stream)
					}
				}
			}
			if !reconnecting || !reopened {
				t.Errorf("status events %+v: want reconnecting, then open", events)
			}
		})
	}
}

// TestResetPruned: retention removed changes a subscription still needed. At
// Subscribe the refusal is a *ResetError; for a subscription resuming after a
// restart, Next returns what it had and then the *ResetError. Subscribing again
// from a reload's seq continues.
func TestResetPruned(t *testing.T) {
	t.Parallel()
	retain := []string{"--retain-count", "10", "--retain-interval", "50ms"}
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`, retain...)
	c := dial(t, srv.WSURL(), &client.Options{MaxDelay: time.Second})
	s := subscribe(t, c, client.SubscribeOptions{Since: client.Seq(0)})
	testenv.SQLite(t, db, inserts("t", "v", 1, 5))
	assertContiguous(t, until(t, s, 5), 1)

	// While the server is down, 100 more changes are written; a server with
	// retention (on another port, so the client cannot reach it yet) prunes the
	// log to the newest 10 before the client can resume.
	srv.Kill()
	testenv.SQLite(t, db, inserts("t", "v", 6, 100))
	pruner := testenv.StartServer(t, db, retain...)
	testenv.WaitFor(t, timeout, "retention to prune", func() bool {
		return testenv.SQLiteInt(t, db, "SELECT min(seq) FROM sqlws_changes;") == 96
	})
	pruner.Stop()
	restartSameAddr(t, srv, retain...)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	b, err := s.Next(ctx)
	var re *client.ResetError
	if !errors.As(err, &re) || re.Reason != protocol.ResetPruned || re.Head != 105 || re.ID != s.ID() || len(b) != 0 {
		t.Fatalf("after resuming across pruned changes Next = %d changes, %v; want a reset (pruned, head 105)", len(b), err)
	}
	if _, err := s.Next(ctx); !errors.As(err, &re) {
		t.Fatalf("Next after the reset = %v, want the reset again", err)
	}

	// Subscribing from before the oldest retained change is refused the same way.
	if _, err := c.Subscribe(ctx, client.SubscribeOptions{Since: client.Seq(94)}); !errors.As(err, &re) || re.Reason != protocol.ResetPruned {
		t.Fatalf("subscribe since 94 with oldest 96: %v, want a reset (pruned)", err)
	}
	// The oldest retained seq, minus one, is still a valid since (read before the
	// next write lets retention move on).
	edge := subscribe(t, c, client.SubscribeOptions{Since: client.Seq(95)})
	assertContiguous(t, until(t, edge, 105), 96)
	// The reload's seq (here the head, as a REST read reports it) continues.
	again := subscribe(t, c, client.SubscribeOptions{Since: client.Seq(maxSeq(t, db))})
	expectMarker(t, again, db, "t", "v", 106)
}

// TestSlowConsumer: a consumer that stops calling Next does not make the client
// buffer without bound: the client stops reading the socket, the server drops it as
// a slow consumer, and once the consumer reads again the client resumes from where
// it stopped. Nothing is lost or repeated.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	const (
		rows   = 20000
		perTx  = 1000
		buffer = 100
	)
	db, srv := start(t, `CREATE TABLE fat(id INTEGER PRIMARY KEY, pad TEXT);`, "--write-timeout", "1s")
	var st statusLog
	c := dial(t, srv.WSURL(), &client.Options{Buffer: buffer, OnStatus: st.add, MaxDelay: time.Second})
	s := subscribe(t, c, client.SubscribeOptions{})
	for i := 0; i < rows; i += perTx {
		// ~2 KB per change, 40 MB in all: far more than the sockets hold.
		testenv.SQLite(t, db, fmt.Sprintf(`BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d)
INSERT INTO fat(pad) SELECT hex(randomblob(1000)) FROM c;
COMMIT;`, perTx))
	}
	testenv.WaitFor(t, 60*time.Second, "the server to drop the stalled client", func() bool {
		return strings.Contains(srv.Stderr(), "reason=slow_consumer")
	})
	if stt := s.Stats(); stt.Received > buffer+1000 || stt.Buffered > buffer+1000 {
		t.Fatalf("a consumer that read nothing: %+v; want at most the buffer (%d) and one frame", stt, buffer)
	}
	var got []client.Change
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for len(got) < rows {
		b, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("after %d changes: %v", len(got), err)
		}
		got = append(got, b...)
	}
	assertContiguous(t, got, 1)
	expectMarker(t, s, db, "fat", "id", rows+1)
	var dropped bool
	for _, e := range st.list() {
		if e.State == client.StateReconnecting && e.Code == -1 {
			dropped = true
		}
	}
	if !dropped {
		t.Errorf("status events %+v: want a reconnect after the server dropped the connection", st.list())
	}
}

// TestClose: Close ends Next, unblocks a reader stalled on a full buffer, works
// while the client is reconnecting, and leaves no goroutine behind.
func TestClose(t *testing.T) {
	// Not parallel: the leak check looks at every goroutine of the process.
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	// Tests that ran before may leave the HTTP machinery of their servers' cleanups
	// winding down; only what this test starts counts.
	ignore := goleak.IgnoreCurrent()

	c, err := client.Dial(t.Context(), srv.WSURL(), &client.Options{Buffer: 10})
	if err != nil {
		t.Fatal(err)
	}
	waiting := subscribe(t, c, client.SubscribeOptions{Tables: []string{"t"}})
	stalled := subscribe(t, c, client.SubscribeOptions{})
	nextErr := make(chan error, 1)
	go func() {
		_, err := waiting.Next(context.Background())
		for err == nil {
			_, err = waiting.Next(context.Background())
		}
		nextErr <- err
	}()
	testenv.SQLite(t, db, inserts("t", "v", 1, 50))
	// The stalled subscription's buffer fills, and the reader waits for room.
	testenv.WaitFor(t, timeout, "the reader to stall", func() bool { return client.ReaderStalled(stalled) })
	if b := stalled.Stats().Buffered; b == 0 || b >= 50 {
		t.Errorf("stalled subscription buffers %d changes, want some but not all 50", b)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-nextErr:
		if err != client.ErrClosed {
			t.Errorf("Next during Close returned %v, want ErrClosed", err)
		}
	case <-time.After(timeout):
		t.Fatal("Next did not return after Close")
	}
	if _, err := stalled.Next(context.Background()); err != client.ErrClosed {
		t.Errorf("Next on a closed client's subscription = %v, want ErrClosed", err)
	}
	if _, err := c.Subscribe(context.Background(), client.SubscribeOptions{}); err != client.ErrClosed {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if c.State() != client.StateClosed || c.Close() != nil {
		t.Errorf("state after Close = %v", c.State())
	}
	goleak.VerifyNone(t, ignore)

	// Close while reconnecting to a server that is gone.
	c2, err := client.Dial(t.Context(), srv.WSURL(), &client.Options{MinDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, c2, client.SubscribeOptions{})
	srv.Kill()
	testenv.WaitFor(t, timeout, "the client to retry", func() bool { return c2.State() == client.StateReconnecting })
	// A subscription made while disconnected waits for a connection, bounded by its
	// context.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = c2.Subscribe(ctx, client.SubscribeOptions{})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Subscribe while the server is down = %v, want the context's deadline", err)
	}
	c2.Close()
	if _, err := sub.Next(context.Background()); err != client.ErrClosed {
		t.Errorf("Next = %v, want ErrClosed", err)
	}
	goleak.VerifyNone(t, ignore)
}

// BenchmarkCatchUp measures the whole client on a real server: a subscription
// from seq 0 reads a changelog of 200,000 changes (frames of up to 1,000) and the
// consumer takes them all with Next. The server shares the machine, so the figure
// is the pair's throughput, not the client's alone.
func BenchmarkCatchUp(b *testing.B) {
	const rows = 200_000
	db := testenv.NewDB(b, `CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0);`)
	srv := testenv.StartServer(b, db)
	testenv.SQLite(b, db, fmt.Sprintf(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d)
INSERT INTO todos(title) SELECT 'buy milk number ' || x FROM c;`, rows))
	c, err := client.Dial(b.Context(), srv.WSURL(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		s, err := c.Subscribe(b.Context(), client.SubscribeOptions{Since: client.Seq(0)})
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < rows; {
			batch, err := s.Next(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			n += len(batch)
		}
		if err := s.Unsubscribe(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "changes/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/change")
}
