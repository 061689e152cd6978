package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
	"github.com/sqlws/sqlws/ws"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql keeps an opener goroutine per pool until Close; pools are closed in
		// cleanups, but the check runs after every test of the package.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
}

type server struct {
	d    *testdb.DB
	hub  *ws.Hub
	http *httptest.Server
	path string
}

// start runs a hub and tailer over a real database file, served on loopback.
func start(t *testing.T, schema string, opts ws.Options, wopts fanout.Options) *server {
	t.Helper()
	path := testenv.NewDB(t, schema)
	ctx, cancel := context.WithCancel(context.Background())
	d := testdb.Install(t, path, testdb.Options{})
	pos, _ := d.Log.Position(ctx)
	hub := ws.NewHub(fanout.NewWindow(d.Log, pos.Head, wopts), d.Schema, opts)
	tl := d.NewTailer(pos.Head, hub.Publish, changelog.TailerOptions{Dropped: hub.TableDropped})
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		hub.Close(sctx)
		srv.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("tailer did not stop within 10s of cancel")
		}
		d.Close()
	})
	return &server{d: d, hub: hub, http: srv, path: path}
}

type client struct {
	t *testing.T
	c *websocket.Conn
}

func (s *server) dial(t *testing.T) (*client, protocol.Hello) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.http.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { c.CloseNow() })
	cl := &client{t: t, c: c}
	var h protocol.Hello
	cl.read(&h)
	return cl, h
}

func (c *client) send(msg string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read(v any) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%v: %s", err, b)
		}
	}
	return string(b)
}

// changes reads frames until n changes arrived, failing on anything else.
func (c *client) changes(n int) []models.Change {
	c.t.Helper()
	var out []models.Change
	for len(out) < n {
		var f protocol.ChangesFrame
		raw := c.read(&f)
		if f.Type != protocol.TypeChanges {
			c.t.Fatalf("want changes, got %s", raw)
		}
		out = append(out, f.Changes...)
	}
	return out
}

func insertRows(t *testing.T, path string, from, n int, pad int) {
	t.Helper()
	testenv.SQLite(t, path, fmt.Sprintf(
		"WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i+1 FROM n WHERE i < %d) INSERT INTO t(id, v) SELECT i, printf('%%.%dc', 'x') FROM n;",
		from, from+n-1, pad))
}

// A subscriber far behind a small window is served from the changelog, in frames of
// many changes, and then rejoins the live window with no gap or duplicate.
func TestBehindWindowReadsChangelogThenRejoins(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{}, fanout.Options{WindowChanges: 100, FrameChanges: 250})
	insertRows(t, s.path, 1, 3000, 10)
	c, hello := s.dial(t)
	if hello.Head < 3000 || hello.Oldest != 1 {
		t.Fatalf("hello %+v", hello)
	}
	c.send(`{"type":"subscribe","id":1,"since":0}`)
	var ack protocol.Subscribed
	c.read(&ack)
	if ack.Type != protocol.TypeSubscribed {
		t.Fatalf("ack %+v", ack)
	}
	got := c.changes(3000)
	insertRows(t, s.path, 3001, 10, 10)
	got = append(got, c.changes(10)...)
	for i, ch := range got {
		if ch.Seq != int64(i+1) {
			t.Fatalf("change %d has seq %d", i, ch.Seq)
		}
	}
}

// Retention that overtakes a subscriber while it catches up produces a reset, never a
// silent gap.
func TestPrunedDuringCatchUpResets(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{}, fanout.Options{WindowChanges: 10, FrameChanges: 5})
	insertRows(t, s.path, 1, 200, 200000) // 40 MB: more than any socket buffers, so the writer blocks part-way
	c, _ := s.dial(t)
	// The writer blocks on the full socket part-way through history; prune then.
	c.send(`{"type":"subscribe","id":"a","since":0,"tables":["t"]}`)
	var ack protocol.Subscribed
	c.read(&ack)
	if _, err := s.d.Log.Prune(context.Background(), changelog.Retention{MaxCount: 20}, 1<<62); err != nil {
		t.Fatal(err)
	}
	var last int64
	for {
		var m struct {
			Type    string
			Reason  string
			Changes []models.Change
		}
		c.read(&m)
		if m.Type == protocol.TypeReset {
			if m.Reason != protocol.ResetPruned {
				t.Fatalf("reset reason %q", m.Reason)
			}
			break
		}
		for _, ch := range m.Changes {
			if ch.Seq != last+1 {
				t.Fatalf("gap: %d after %d", ch.Seq, last)
			}
			last = ch.Seq
		}
		if last >= 200 {
			t.Fatal("received everything although 180 changes were pruned before they were sent")
		}
	}
	// The connection is still usable: resubscribe from the new oldest.
	c.send(`{"type":"subscribe","id":"a","since":180}`)
	c.read(&ack)
	if ch := c.changes(20); ch[0].Seq != 181 || ch[19].Seq != 200 {
		t.Fatalf("after resubscribe got %d..%d", ch[0].Seq, ch[19].Seq)
	}
}

// Shutdown closes clients with 1001 and leaves no goroutines behind (TestMain checks).
func TestCloseSendsGoingAway(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{}, fanout.Options{})
	c, _ := s.dial(t)
	c.send(`{"type":"subscribe","id":"x"}`)
	c.read(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go s.hub.Close(ctx)
	_, _, err := c.c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("close status %v (%v), want 1001", websocket.CloseStatus(err), err)
	}
}

// Clients may write before reading hello; bytes that arrive while the connection is
// upgraded must not be lost.
func TestSubscribeWrittenBeforeHello(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{}, fanout.Options{})
	url := "ws" + strings.TrimPrefix(s.http.URL, "http")
	for i := range 300 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","id":1}`)); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{protocol.TypeHello, protocol.TypeSubscribed} {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			var m struct{ Type string }
			json.Unmarshal(b, &m)
			if m.Type != want {
				t.Fatalf("connection %d: got %s, want %s", i, b, want)
			}
		}
		c.CloseNow()
		cancel()
	}
}

// A client that stops reading is disconnected once a write has been blocked for the
// write timeout; the connection's goroutines end (TestMain checks for leaks).
func TestSlowConsumerDisconnected(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{WriteTimeout: 500 * time.Millisecond}, fanout.Options{FrameChanges: 5})
	c, _ := s.dial(t)
	c.send(`{"type":"subscribe","id":1}`)
	c.read(nil)                           // subscribed; from here on the client reads nothing
	insertRows(t, s.path, 1, 200, 200000) // 40 MB: the socket fills and the writer blocks
	testenv.WaitFor(t, 30*time.Second, "the stalled client to be disconnected (write timeout 500ms)", func() bool {
		return s.hub.Stats().Connections == 0
	})
}

// A live subscriber that does not read for a while: its socket fills, the pump hands
// a half-written frame to the connection's writer, which finishes it once the client
// reads again, while the library's pings compete for the socket. Every change still
// arrives once, in order, on the same connection.
func TestLiveFramesSurviveFullSocket(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
		ws.Options{PingInterval: 20 * time.Millisecond, PingTimeout: 30 * time.Second}, fanout.Options{FrameChanges: 3})
	c, _ := s.dial(t)
	c.send(`{"type":"subscribe","id":1}`)
	c.read(nil)                           // subscribed; the client reads nothing until all rows are in
	insertRows(t, s.path, 1, 200, 200000) // 40 MB, all in the window: far more than socket buffers
	got := c.changes(200)
	for i, ch := range got {
		if ch.Seq != int64(i+1) {
			t.Fatalf("change %d has seq %d", i, ch.Seq)
		}
	}
	insertRows(t, s.path, 201, 1, 10)
	if ch := c.changes(1); ch[0].Seq != 201 {
		t.Fatalf("after the backlog: seq %d", ch[0].Seq)
	}
	if n := s.hub.Stats().Connections; n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}
