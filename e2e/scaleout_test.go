package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/broker"
	"github.com/sqlws/sqlws/internal/natstest"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// Scale-out: `sqlws serve --publish` as the source node and `sqlws edge` nodes, real
// binaries as subprocesses, with a real nats-server (JetStream) embedded in the test
// process; see docs/scaling.md.

// cluster is a source publishing one database to NATS and the edges serving it.
type cluster struct {
	ns     *natstest.Server
	db     string
	stream string // the JetStream stream's name
	src    *testenv.Server
	srcArg []string
}

// startCluster starts NATS and a source publishing a new database created with schema.
func startCluster(t *testing.T, schema string, srcArgs ...string) *cluster {
	t.Helper()
	c := &cluster{ns: natstest.Start(t), db: testenv.NewDB(t, schema), stream: broker.DefaultStream}
	c.srcArg = append([]string{"--publish", c.ns.URL}, srcArgs...)
	c.src = testenv.StartServer(t, c.db, c.srcArg...)
	return c
}

// restartSource starts the source again (after Kill or Stop) on the same database.
func (c *cluster) restartSource(t *testing.T) {
	t.Helper()
	c.src = testenv.StartServer(t, c.db, c.srcArg...)
}

// edge starts an edge of the cluster's stream and waits until it is ready.
func (c *cluster) edge(t *testing.T, args ...string) *testenv.Server {
	t.Helper()
	e := testenv.StartEdge(t, c.ns.URL, append([]string{"--nats-stream", c.stream}, args...)...)
	e.WaitReady(t, timeout)
	return e
}

// head is the database's head seq, read with the CLI.
func (c *cluster) head(t *testing.T) int64 {
	t.Helper()
	return testenv.SQLiteInt(t, c.db, "SELECT coalesce(max(seq), 0) FROM sqlws_changes;")
}

// rawRecords subscribes at url from since and returns the next n change records
// exactly as they arrived, byte for byte.
func rawRecords(t *testing.T, url string, since int64, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(-1)
	if err := conn.Write(ctx, websocket.MessageText, []byte(testenv.SubscribeMsg("raw", nil, &since, ""))); err != nil {
		t.Fatal(err)
	}
	var out []string
	for len(out) < n {
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("%s: got %d of %d records: %v", url, len(out), n, err)
		}
		var f struct {
			Type    string
			Changes []json.RawMessage
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case protocol.TypeHello, protocol.TypeSubscribed:
		case protocol.TypeChanges:
			for _, r := range f.Changes {
				out = append(out, string(r))
			}
		default:
			t.Fatalf("%s: unexpected frame %s", url, data)
		}
	}
	return out[:n]
}

// sameRaw fails unless every node served the same bytes.
func sameRaw(t *testing.T, what string, want, got []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: record %d differs:\n got  %s\n want %s", what, i, got[i], want[i])
		}
	}
}

// TestScaleOutEdgesDeliverInOrder: CLI writes on the source reach the clients of two
// edges in order, without gaps, with records byte-identical to the source's; a
// 10,000-row transaction crosses JetStream whole and in order.
func TestScaleOutEdgesDeliverInOrder(t *testing.T) {
	t.Parallel()
	c := startCluster(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT, r REAL, b BLOB, s TEXT);
CREATE TABLE "odd table.name"(k TEXT PRIMARY KEY, v ANY);`)
	a, b := c.edge(t), c.edge(t)
	var clients []*testenv.Client
	for _, srv := range []*testenv.Server{c.src, a, b} {
		cl := srv.Dial(t)
		if len(clients) > 0 && cl.Hello.Stream != clients[0].Hello.Stream {
			t.Fatalf("hello stream %s differs from the source's %s", cl.Hello.Stream, clients[0].Hello.Stream)
		}
		cl.Subscribe("all", nil, nil, "")
		cl.Subscribe("odd", []string{"odd table.name"}, nil, "")
		clients = append(clients, cl)
	}
	testenv.SQLite(t, c.db, `
INSERT INTO items(n, r, b, s) VALUES (9223372036854775807, 0.1, x'00ff10', 'ünïcode "quoted"\n');
INSERT INTO items(n, r, b, s) VALUES (-1, 1e300, NULL, NULL), (2, 7.0, x'', '');
INSERT INTO "odd table.name" VALUES ('a', 1.5), ('b', x'aa');
UPDATE items SET r = 0.30000000000000004 WHERE id = 1;
DELETE FROM items WHERE id = 2;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 10000)
INSERT INTO items(n, s) SELECT i, 'bulk ' || i FROM c;`)
	const total = 10007
	for i, cl := range clients {
		got := cl.WaitChanges("all", total, timeout)
		testenv.AssertContiguous(t, got, 1)
		bulk := got[total-10000:]
		for j, ch := range bulk {
			if ch.Op != models.OpInsert || intField(t, ch, "n") != int64(j+1) {
				t.Fatalf("node %d: bulk change %d = %+v, want insert of n=%d", i, j, ch, j+1)
			}
		}
		odd := cl.WaitChanges("odd", 2, timeout)
		if odd[0].Table != "odd table.name" || odd[0].Seq != 4 || odd[1].Seq != 5 {
			t.Fatalf("node %d: the oddly named table's changes: %+v", i, odd)
		}
	}
	want := rawRecords(t, c.src.URL, 0, total)
	sameRaw(t, "edge a", want, rawRecords(t, a.URL, 0, total))
	sameRaw(t, "edge b", want, rawRecords(t, b.URL, 0, total))
}

// TestScaleOutMoveBetweenEdges: a client leaves edge A, 500 writes happen, and it
// resumes on edge B with since: it gets exactly those 500. Then edge B is killed
// with SIGKILL and the client resumes on edge A.
func TestScaleOutMoveBetweenEdges(t *testing.T) {
	t.Parallel()
	c := startCluster(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT);`)
	a, b := c.edge(t), c.edge(t)
	cl := a.Dial(t)
	stream := cl.Hello.Stream
	cl.Subscribe("s", nil, testenv.Int64(0), "")
	testenv.SQLite(t, c.db, inserts("items", "n", 1, 10))
	got := cl.WaitChanges("s", 10, timeout)
	cl.Close()
	last := got[len(got)-1].Seq

	testenv.SQLite(t, c.db, inserts("items", "n", 11, 500))
	cl = b.Dial(t)
	cl.Subscribe("s", nil, &last, stream)
	more := cl.WaitChanges("s", 500, timeout)
	testenv.AssertContiguous(t, more, last+1)
	for i, ch := range more {
		if intField(t, ch, "n") != int64(11+i) {
			t.Fatalf("change %d = %+v, want n=%d", i, ch, 11+i)
		}
	}
	expectMarker(t, cl, "s", c.db, "items", "n", last+501)
	last += 501

	b.Kill()
	if code, _ := cl.WaitClosed(timeout); code == websocket.StatusGoingAway {
		t.Fatal("a killed edge sent 1001?")
	}
	testenv.SQLite(t, c.db, inserts("items", "n", 1000, 50))
	cl = a.Dial(t)
	cl.Subscribe("s", nil, &last, stream)
	testenv.AssertContiguous(t, cl.WaitChanges("s", 50, timeout), last+1)
	expectMarker(t, cl, "s", c.db, "items", "n", last+51)
}

// TestScaleOutSourceCrash: the source is killed with SIGKILL while a CLI writer
// runs, the writer goes on while it is down, and the source restarts: JetStream holds
// every seq exactly once, byte-identical to the changelog, and the edges' clients
// get every change without gap or duplicate.
func TestScaleOutSourceCrash(t *testing.T) {
	t.Parallel()
	c := startCluster(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT);`)
	a, b := c.edge(t), c.edge(t)
	ca, cb := a.Dial(t), b.Dial(t)
	ca.Subscribe("s", nil, testenv.Int64(0), "")
	cb.Subscribe("s", nil, testenv.Int64(0), "")
	w := startWriter(c.db, "items", "n")
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
		<-w.done
	})
	first := ca.WaitChanges("s", 50, timeout)
	c.src.Kill()
	w.waitCount(t, w.n.Load()+50) // written while the source is down
	c.restartSource(t)
	w.waitCount(t, w.n.Load()+50)
	total := w.finish(t)
	head := c.head(t)
	if head != total {
		t.Fatalf("changelog head %d for %d CLI inserts", head, total)
	}
	for _, cl := range []*testenv.Client{ca, cb} {
		got := cl.WaitSeq("s", head, timeout)
		if cl == ca {
			got = append(first, got...)
		}
		testenv.AssertContiguous(t, got, 1)
		if int64(len(got)) != head {
			t.Fatalf("a client received %d changes, want %d", len(got), head)
		}
		if extra := cl.Take("s"); len(extra) > 0 {
			t.Fatalf("changes after the head: %d, first %d", len(extra), extra[0].Seq)
		}
	}

	// JetStream itself: every seq once, in order, the source's bytes.
	js := c.ns.JetStream(t)
	testenv.WaitFor(t, timeout, "the stream to reach the head", func() bool {
		return int64(natstest.StreamInfo(t, js, c.stream).State.LastSeq) >= head
	})
	info := natstest.StreamInfo(t, js, c.stream)
	if info.State.FirstSeq != 1 || int64(info.State.LastSeq) != head || int64(info.State.Msgs) != head {
		t.Fatalf("stream %+v, want 1..%d with %d messages", info.State, head, head)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	src, err := broker.OpenSource(ctx, js, c.stream, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var inStream []string
	for after := int64(0); after < head; {
		recs, err := src.ReadChanges(ctx, after, 512, 1<<20)
		if err != nil || len(recs) == 0 {
			t.Fatalf("read the stream after %d: %d records, %v", after, len(recs), err)
		}
		for _, r := range recs {
			inStream = append(inStream, string(r.JSON))
		}
		after = recs[len(recs)-1].Seq
	}
	sameRaw(t, "JetStream", rawRecords(t, c.src.URL, 0, int(head)), inStream)
}

// TestScaleOutNATSRestart: NATS restarts (with its store) twice while changes are
// written; source and edges recover by themselves, and the edges' clients get every
// change once, in order.
func TestScaleOutNATSRestart(t *testing.T) {
	t.Parallel()
	c := startCluster(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT);`)
	a, b := c.edge(t), c.edge(t)
	ca, cb := a.Dial(t), b.Dial(t)
	ca.Subscribe("s", nil, nil, "")
	cb.Subscribe("s", nil, nil, "")
	testenv.SQLite(t, c.db, inserts("items", "n", 1, 100))
	ca.WaitChanges("s", 100, timeout)
	c.ns.Restart()
	testenv.SQLite(t, c.db, inserts("items", "n", 101, 100))
	c.ns.Restart()
	testenv.SQLite(t, c.db, inserts("items", "n", 201, 100))
	got := ca.WaitChanges("s", 200, timeout)
	testenv.AssertContiguous(t, got, 101)
	got = cb.WaitChanges("s", 300, timeout)
	testenv.AssertContiguous(t, got, 1)
	a.WaitReady(t, timeout)
	b.WaitReady(t, timeout)
	expectMarker(t, ca, "s", c.db, "items", "n", 301)
	if m := cb.WaitChanges("s", 1, timeout)[0]; m.Seq != 301 {
		t.Fatalf("edge b: after 300 the next change is %d, want the marker 301", m.Seq)
	}
}

// TestScaleOutResets: an edge answers the resets the source would: pruned for a
// since older than JetStream keeps (--nats-max-bytes), stream for another database's
// stream, whose own edge serves it side by side on the same NATS.
func TestScaleOutResets(t *testing.T) {
	t.Parallel()
	c := startCluster(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT, pad TEXT);`, "--nats-max-bytes", "100000")
	e := c.edge(t)
	testenv.SQLite(t, c.db, `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 2000)
INSERT INTO items(n, pad) SELECT i, printf('%.200c', 'x') FROM c;`)
	js := c.ns.JetStream(t)
	testenv.WaitFor(t, timeout, "JetStream to drop its oldest changes", func() bool {
		st := natstest.StreamInfo(t, js, c.stream).State
		return st.LastSeq == 2000 && st.FirstSeq > 1
	})
	first := int64(natstest.StreamInfo(t, js, c.stream).State.FirstSeq)
	cl := e.Dial(t)
	if cl.Hello.Oldest < first || cl.Hello.Head != 2000 {
		t.Fatalf("hello %+v, want oldest ≥ %d, head 2000", cl.Hello, first)
	}
	if m := cl.SubscribeReply("old", nil, testenv.Int64(0), ""); m.Type != protocol.TypeReset || m.Reason != protocol.ResetPruned {
		t.Fatalf("since 0 on the edge: %s, want reset pruned", m.Raw)
	}
	// The source still has it all: the edge's history is JetStream's.
	src := c.src.Dial(t)
	src.Subscribe("old", nil, testenv.Int64(0), "")
	src.WaitChanges("old", 2000, timeout)
	cl.Subscribe("kept", nil, testenv.Int64(cl.Hello.Oldest-1), "")
	testenv.AssertContiguous(t, cl.WaitChanges("kept", int(2000-cl.Hello.Oldest+1), timeout), cl.Hello.Oldest)

	// Another database on the same NATS, in its own stream, with its own edge.
	other := testenv.NewDB(t, `CREATE TABLE items(id INTEGER PRIMARY KEY, n INT, pad TEXT);`)
	testenv.StartServer(t, other, "--publish", c.ns.URL, "--nats-stream", "other")
	oe := testenv.StartEdge(t, c.ns.URL, "--nats-stream", "other")
	oe.WaitReady(t, timeout)
	oc := oe.Dial(t)
	if oc.Hello.Stream == cl.Hello.Stream {
		t.Fatal("two databases announce the same stream")
	}
	if m := oc.SubscribeReply("x", nil, testenv.Int64(10), cl.Hello.Stream); m.Type != protocol.TypeReset || m.Reason != protocol.ResetStream {
		t.Fatalf("another database's stream on this edge: %s, want reset stream", m.Raw)
	}
}

// TestScaleOutEdgeHTTP: an edge with --source proxies REST and the dashboard to the
// source (a row created through the edge arrives on its WebSocket), one without
// answers 503 saying where they are; /readyz, /healthz and the lag in /metrics.
func TestScaleOutEdgeHTTP(t *testing.T) {
	t.Parallel()
	c := startCluster(t, `CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT);`)
	// The stream exists as soon as the source announced itself, before any change.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := c.ns.JetStream(t).Stream(ctx, c.stream); err != nil {
		t.Fatalf("stream right after the source started: %v", err)
	}
	proxied := c.edge(t, "--source", c.src.URL)
	bare := c.edge(t)
	cl := proxied.Dial(t)
	cl.Subscribe("s", []string{"todos"}, nil, "")
	m := restOK(t, proxied, http.StatusCreated, "POST", "/api/tables/todos/rows", `{"title":"through the edge"}`)
	if got := cl.WaitChanges("s", 1, timeout)[0]; string(field(t, got, "title")) != `"through the edge"` {
		t.Fatalf("the row created through the edge: %+v (REST answered %v)", got, m)
	}
	restOK(t, proxied, http.StatusOK, "GET", "/api/tables", "")
	if r := restDo(t, proxied, "GET", "/", "", ""); r.status != http.StatusOK || !strings.Contains(string(r.body), "<html") {
		t.Fatalf("dashboard through the edge: %d", r.status)
	}
	r := restDo(t, bare, "GET", "/api/tables", "", "")
	if r.status != http.StatusServiceUnavailable || !jsonHas(r.body, `"code":"unavailable"`) || !strings.Contains(string(r.body), "source node") {
		t.Fatalf("REST on an edge without --source: %d %s, want 503 naming the source node", r.status, r.body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := restDo(t, bare, "GET", path, "", ""); r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	resp, err := http.Get(bare.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sqlws_tailer_lag_changes 0") {
		t.Fatalf("edge metrics lack its lag behind JetStream:\n%s", body)
	}

	// The source gone, the proxy says so instead of hanging.
	c.src.Stop()
	r = restDo(t, proxied, "GET", "/api/tables", "", "")
	if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), c.src.URL) {
		t.Fatalf("REST through an edge whose source is down: %d %s, want 502 naming it", r.status, r.body)
	}
}

// TestScaleOutFilters: a filtered subscription on an edge gets exactly the records
// the same subscription gets on the source — a NOCASE column included, whose
// collation reaches the edge with the schema.
func TestScaleOutFilters(t *testing.T) {
	t.Parallel()
	c := startCluster(t, `CREATE TABLE todos(id INTEGER PRIMARY KEY, owner TEXT COLLATE NOCASE, done INTEGER);`)
	e := c.edge(t)
	const where, sel = "owner=eq.alice&done=eq.0", "id,done"
	var got [2][]models.Change
	clients := [2]*testenv.Client{c.src.Dial(t), e.Dial(t)}
	for _, cl := range clients {
		if r := subscribeFiltered(t, cl, "f", []string{"todos"}, where, sel, testenv.Int64(0)); r.Type != protocol.TypeSubscribed {
			t.Fatalf("filtered subscribe: %s", r.Raw)
		}
	}
	testenv.SQLite(t, c.db, `
INSERT INTO todos VALUES(1, 'ALICE', 0);
INSERT INTO todos VALUES(2, 'bob', 0);
UPDATE todos SET done = 1 WHERE id = 1;
UPDATE todos SET owner = 'Alice' WHERE id = 2;
DELETE FROM todos WHERE id = 2;`)
	for i, cl := range clients {
		got[i] = cl.WaitChanges("f", 4, timeout)
	}
	if fmt.Sprint(seqs(got[0])) != "[1 3 4 5]" {
		t.Fatalf("source: seqs %v, want [1 3 4 5]", seqs(got[0]))
	}
	for i := range got[0] {
		a, _ := json.Marshal(got[0][i])
		b, _ := json.Marshal(got[1][i])
		if string(a) != string(b) {
			t.Errorf("record %d: source %s, edge %s", i, a, b)
		}
	}
	checkMoved(t, got[1][1], "out")
	checkMoved(t, got[1][2], "in")
}
