package broker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/broker"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/internal/natstest"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// sameAsDB fails unless got are the database's changes after after, in order.
func sameAsDB(t *testing.T, src *source, got []models.Change, after int64) {
	t.Helper()
	want, _ := readDB(t, src.d, after)
	if len(got) > len(want) {
		t.Fatalf("got %d changes, the database has %d after %d", len(got), len(want), after)
	}
	for i, c := range got {
		w := want[i]
		if c.Seq != w.Seq || c.Table != w.Table {
			t.Fatalf("change %d: seq %d table %q, want seq %d table %q", i, c.Seq, c.Table, w.Seq, w.Table)
		}
	}
}

// TestEdgesServeTheStream: clients of two edges receive the source's changes, in
// order, without gaps; hello announces the database's stream and JetStream's extent.
func TestEdgesServeTheStream(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", todos, "s1", broker.PublisherOptions{})
	testenv.SQLite(t, src.path, inserts(50))
	src.waitPublished(50)
	a := startEdge(t, ns, "s1", broker.EdgeOptions{})
	b := startEdge(t, ns, "s1", broker.EdgeOptions{})
	ca, cb := a.dial(t), b.dial(t)
	for _, c := range []*testenv.Client{ca, cb} {
		if c.Hello.Stream != src.d.Store.StreamID() || c.Hello.Head != 50 || c.Hello.Oldest != 1 {
			t.Fatalf("hello = %+v, want stream %s, head 50, oldest 1", c.Hello, src.d.Store.StreamID())
		}
		c.Subscribe("all", nil, nil, "")
		c.Subscribe("old", []string{"todos"}, testenv.Int64(10), "")
	}
	testenv.SQLite(t, src.path, inserts(300)+`UPDATE todos SET title = 'u' WHERE id < 5;`)
	for _, c := range []*testenv.Client{ca, cb} {
		got := c.WaitChanges("all", 304, timeout)
		testenv.AssertContiguous(t, got, 51)
		sameAsDB(t, src, got, 50)
		old := c.WaitChanges("old", 344, timeout)
		testenv.AssertContiguous(t, old, 11)
		sameAsDB(t, src, old, 10)
	}
}

// TestEdgeCatchUpFromJetStream: a client far behind an edge whose window is small
// catches up from JetStream itself, in shared pages, without gaps.
func TestEdgeCatchUpFromJetStream(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", todos, "s1", broker.PublisherOptions{})
	testenv.SQLite(t, src.path, inserts(3000))
	src.waitPublished(3000)
	e := startEdge(t, ns, "s1", broker.EdgeOptions{Window: fanout.Options{WindowChanges: 100}})
	var cs []*testenv.Client
	for range 3 {
		c := e.dial(t)
		c.Subscribe("a", nil, testenv.Int64(7), "")
		cs = append(cs, c)
	}
	for _, c := range cs {
		got := c.WaitChanges("a", 2993, timeout)
		testenv.AssertContiguous(t, got, 8)
		sameAsDB(t, src, got, 7)
	}
	if st := e.e.Hub().Stats(); st.Pages.Reads == 0 || st.Pages.Reads > 2993/100 {
		t.Errorf("JetStream page reads = %d, want some, shared by the three clients", st.Pages.Reads)
	}
}

// TestEdgeResets: the resets an edge answers are the source's: pruned for a since
// before JetStream's first sequence, stream for another database's stream, future
// for a since JetStream does not reach within the head wait.
func TestEdgeResets(t *testing.T) {
	ns := natstest.Start(t)
	path := testenv.NewDB(t, todos)
	src := startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, inserts(100))
	src.waitPublished(100)
	src.stop()
	testenv.SQLite(t, path, inserts(20)+`DELETE FROM sqlws_changes WHERE seq <= 110;`)
	src = startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	src.waitPublished(120)
	e := startEdge(t, ns, "s1", broker.EdgeOptions{HeadWait: 300 * time.Millisecond})
	c := e.dial(t)
	if c.Hello.Oldest != 111 || c.Hello.Head != 120 {
		t.Fatalf("hello = %+v, want oldest 111, head 120", c.Hello)
	}
	for _, tc := range []struct {
		since  int64
		stream string
		reason string
	}{
		{50, "", protocol.ResetPruned},
		{109, "", protocol.ResetPruned},
		{110, "other", protocol.ResetStream},
		{121, "", protocol.ResetFuture},
	} {
		m := c.SubscribeReply("x", nil, testenv.Int64(tc.since), tc.stream)
		if m.Type != protocol.TypeReset || m.Reason != tc.reason {
			t.Errorf("since %d stream %q: %s, want reset %s", tc.since, tc.stream, m.Raw, tc.reason)
		}
	}
	c.Subscribe("ok", nil, testenv.Int64(110), src.d.Store.StreamID())
	testenv.AssertContiguous(t, c.WaitChanges("ok", 10, timeout), 111)
}

// TestEdgeWaitsForThePublisher: a since the database has but JetStream does not yet
// (a client read it from the source's REST) is not the future: the edge waits for
// the publisher to bring it.
func TestEdgeWaitsForThePublisher(t *testing.T) {
	ns := natstest.Start(t)
	path := testenv.NewDB(t, todos)
	src := startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, inserts(10))
	src.waitPublished(10)
	e := startEdge(t, ns, "s1", broker.EdgeOptions{HeadWait: time.Minute})
	src.stop()
	testenv.SQLite(t, path, inserts(10))
	c := e.dial(t)
	c.Send(testenv.SubscribeMsg("a", nil, testenv.Int64(15), ""))
	startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	if m := c.Next(timeout); m.Type != protocol.TypeSubscribed || m.Head < 15 {
		t.Fatalf("subscribe since 15 while JetStream had 10: %s, want subscribed at head ≥ 15", m.Raw)
	}
	testenv.SQLite(t, path, inserts(1))
	testenv.AssertContiguous(t, c.WaitChanges("a", 6, timeout), 16)
}

// TestEdgeTables: subscribing to a table the source does not track fails at once; a
// table created on the source becomes subscribable on the edge; a dropped table ends
// its subscriptions on the edge with table_dropped after its last change, live and
// replayed.
func TestEdgeTables(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT); CREATE TABLE u(id INTEGER PRIMARY KEY, v INT);`, "s1", broker.PublisherOptions{})
	e := startEdge(t, ns, "s1", broker.EdgeOptions{})
	c := e.dial(t)
	if m := c.SubscribeReply("n", []string{"nope"}, nil, ""); m.Type != protocol.TypeError || m.Code != "unknown_table" {
		t.Fatalf("subscribe to an unknown table: %s, want error unknown_table", m.Raw)
	}
	testenv.SQLite(t, src.path, `CREATE TABLE nope(id INTEGER PRIMARY KEY);`)
	testenv.WaitFor(t, timeout, "the new table on the edge", func() bool {
		return slices.ContainsFunc(e.e.Tables(), func(t models.Table) bool { return t.Name == "nope" })
	})
	c.Subscribe("n", []string{"nope"}, nil, "")

	c.Subscribe("only-t", []string{"t"}, nil, "")
	c.Subscribe("all", nil, nil, "")
	testenv.SQLite(t, src.path, "INSERT INTO t(v) VALUES (1), (2);")
	testenv.SQLite(t, src.path, "DROP TABLE t; CREATE TABLE t(k TEXT PRIMARY KEY, w INT);")
	if got := c.WaitChanges("only-t", 2, timeout); got[1].Table != "t" {
		t.Fatalf("before the drop: %+v", got)
	}
	if m := c.Next(timeout); m.Type != protocol.TypeError || m.Code != "table_dropped" || m.ID() != "only-t" {
		t.Fatalf("after the drop: %s, want error table_dropped for only-t", m.Raw)
	}
	testenv.WaitTriggers(t, src.path, "t")
	testenv.SQLite(t, src.path, "INSERT INTO t(k, w) VALUES ('new', 1);")
	all := c.WaitChanges("all", 3, timeout)
	if all[2].Table != "t" {
		t.Fatalf("all tables: %+v", all)
	}
	c2 := e.dial(t)
	c2.Subscribe("replay", []string{"t"}, testenv.Int64(0), "")
	if got := c2.WaitChanges("replay", 2, timeout); got[1].Seq != 2 {
		t.Fatalf("replay before the drop: %+v", got)
	}
	if m := c2.Next(timeout); m.Type != protocol.TypeError || m.Code != "table_dropped" {
		t.Fatalf("replay: %s, want error table_dropped", m.Raw)
	}
	// An edge started after the drop knows it too.
	e2 := startEdge(t, ns, "s1", broker.EdgeOptions{})
	c3 := e2.dial(t)
	c3.Subscribe("replay", []string{"t"}, testenv.Int64(0), "")
	c3.WaitChanges("replay", 2, timeout)
	if m := c3.Next(timeout); m.Type != protocol.TypeError || m.Code != "table_dropped" {
		t.Fatalf("replay on a new edge: %s, want error table_dropped", m.Raw)
	}
}

// TestEdgeNATSRestart: NATS restarts (with its store) while changes flow: the edge's
// clients get every change once, in order, without doing anything.
func TestEdgeNATSRestart(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", todos, "s1", broker.PublisherOptions{})
	e := startEdge(t, ns, "s1", broker.EdgeOptions{})
	c := e.dial(t)
	c.Subscribe("a", nil, nil, "")
	testenv.SQLite(t, src.path, inserts(100))
	c.WaitChanges("a", 100, timeout)
	ns.Restart()
	testenv.SQLite(t, src.path, inserts(100))
	ns.Restart()
	testenv.SQLite(t, src.path, inserts(100))
	got := c.WaitChanges("a", 200, timeout)
	testenv.AssertContiguous(t, got, 101)
	sameAsDB(t, src, got, 100)
	testenv.WaitFor(t, timeout, "edge ready again", func() bool { return e.e.Ready(context.Background()) == nil })
}

// TestEdgeStreamRecreated: the stream is created again (the source's database went
// back to a backup): the edge closes its connections with 1001 and serves the new
// stream, where a client from the old timeline gets reset future.
func TestEdgeStreamRecreated(t *testing.T) {
	ns := natstest.Start(t)
	path := testenv.NewDB(t, todos)
	backup := path + ".bak"
	src := startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	testenv.SQLite(t, path, inserts(20))
	testenv.SQLite(t, path, ".backup "+testenv.QuoteLiteral(backup))
	testenv.SQLite(t, path, inserts(20))
	src.waitPublished(40)
	e := startEdge(t, ns, "s1", broker.EdgeOptions{HeadWait: 300 * time.Millisecond})
	c := e.dial(t)
	c.Subscribe("a", nil, testenv.Int64(30), "")
	c.WaitChanges("a", 10, timeout)
	src.stop()
	testenv.SQLite(t, path, ".restore "+testenv.QuoteLiteral(backup))
	startSource(t, ns, path, "", "s1", broker.PublisherOptions{})
	if code, _ := c.WaitClosed(timeout); code != websocket.StatusGoingAway {
		t.Fatalf("connection on the old stream closed with %d, want 1001", code)
	}
	var c2 *testenv.Client
	testenv.WaitFor(t, timeout, "the edge serving the new stream", func() bool {
		var err error
		c2, err = testenv.DialErr(t, e.url+"/ws")
		return err == nil && c2.Hello.Head == 20
	})
	if m := c2.SubscribeReply("a", nil, testenv.Int64(40), ""); m.Type != protocol.TypeReset || m.Reason != protocol.ResetFuture {
		t.Fatalf("since 40 on the new stream (head 20): %s, want reset future", m.Raw)
	}
}

// TestEdgeNATSDown: while NATS is down an edge keeps its connections, refuses new
// ones with 1013 and is not ready; once NATS is back its clients get every change
// written meanwhile, in order, and new connections work again.
func TestEdgeNATSDown(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", todos, "s1", broker.PublisherOptions{})
	e := startEdge(t, ns, "s1", broker.EdgeOptions{})
	c := e.dial(t)
	c.Subscribe("a", nil, nil, "")
	testenv.SQLite(t, src.path, inserts(10))
	c.WaitChanges("a", 10, timeout)

	ns.Shutdown()
	testenv.WaitFor(t, timeout, "the edge to notice", func() bool { return e.e.Ready(context.Background()) != nil })
	if _, err := testenv.DialErr(t, e.url+"/ws"); err == nil {
		t.Fatal("a new connection while NATS is down got hello")
	}
	testenv.SQLite(t, src.path, inserts(10))
	if closed, err := c.Closed(); closed {
		t.Fatalf("a connected client was dropped while NATS was down: %v", err)
	}
	ns.Restart()
	testenv.AssertContiguous(t, c.WaitChanges("a", 10, timeout), 11)
	testenv.WaitFor(t, timeout, "the edge ready again", func() bool { return e.e.Ready(context.Background()) == nil })
	c2 := e.dial(t)
	if c2.Hello.Head != 20 {
		t.Fatalf("hello after NATS came back = %+v, want head 20", c2.Hello)
	}
}

// TestEdgeSkipsMarks: a changelog mark (a seq that holds no change) crosses to the
// edges as a mark, not a hole: clients, live or catching up from JetStream, get the
// changes around it and no reset.
func TestEdgeSkipsMarks(t *testing.T) {
	ns := natstest.Start(t)
	src := startSource(t, ns, "", todos, "s1", broker.PublisherOptions{})
	e := startEdge(t, ns, "s1", broker.EdgeOptions{Window: fanout.Options{WindowChanges: 4}})
	live := e.dial(t)
	live.Subscribe("a", nil, testenv.Int64(0), "")
	testenv.SQLite(t, src.path, inserts(10)+`INSERT INTO sqlws_changes (tbl, op, ts) VALUES ('', 'mark', 0);`+inserts(10))
	src.waitPublished(21)
	check := func(c *testenv.Client) {
		t.Helper()
		got := c.WaitChanges("a", 20, timeout)
		for i, ch := range got {
			want := int64(i + 1)
			if i >= 10 {
				want++ // the mark's seq, 11, is no change
			}
			if ch.Seq != want {
				t.Fatalf("change %d has seq %d, want %d", i, ch.Seq, want)
			}
		}
	}
	check(live)
	late := e.dial(t)
	late.Subscribe("a", nil, testenv.Int64(0), "")
	check(late)
	for _, c := range []*testenv.Client{live, late} {
		c.Unsubscribe("a") // fails if a reset (or anything else) came first
	}
}
