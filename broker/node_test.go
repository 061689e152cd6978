package broker_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sqlws/sqlws/broker"
	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/internal/natstest"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql keeps an opener goroutine per pool until Close.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		// nats.go deletes an ordered consumer's server-side consumer on a goroutine of
		// its own, bounded by 10s, after the consumer stops.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats.go/jetstream.(*orderedConsumer).reset.func1"),
	)
}

const timeout = testenv.Timeout

// source is the source side of `sqlws serve --publish`, in process: a database with
// capture installed, its tailer, and a Publisher fed by the tailer.
type source struct {
	t      *testing.T
	path   string
	d      *testdb.DB
	pub    *broker.Publisher
	cancel context.CancelFunc
	done   chan struct{}
}

// startSource serves the database at path (creating it with schema when schema is
// not empty) and publishes it to stream on ns.
func startSource(t *testing.T, ns *natstest.Server, path, schema, stream string, opts broker.PublisherOptions) *source {
	t.Helper()
	if path == "" {
		path = testenv.NewDB(t, schema)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := testdb.Install(t, path, testdb.Options{})
	pos, err := d.Log.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := broker.Connect(ns.URL, broker.ConnOptions{Name: "test source"})
	if err != nil {
		t.Fatal(err)
	}
	opts.Stream = stream
	opts.Tables = d.Schema.Tables
	pub, err := broker.NewPublisher(nc, d.Log, opts)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, timeout)
	err = pub.Setup(sctx)
	scancel()
	if err != nil {
		t.Fatal(err)
	}
	start := pos.Head
	pub.Tailed(start)
	tl := d.NewTailer(start, func(b []models.Encoded) { pub.Tailed(b[len(b)-1].Seq) }, changelog.TailerOptions{Dropped: pub.TableDropped})
	s := &source{t: t, path: path, d: d, pub: pub, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var wg sync.WaitGroup
		wg.Go(func() { pub.Run(ctx) })
		// The schema watcher and the trigger syncer, as sqlws serve runs them: new
		// tables get captured, dropped ones recorded.
		wg.Go(func() { d.Schema.Run(ctx) })
		wg.Go(func() { d.Syncer.Run(ctx) })
		tl.Run(ctx)
		wg.Wait()
		nc.Close()
		d.Close()
	}()
	t.Cleanup(s.stop)
	return s
}

// stop stops the source (tailer, publisher, connection, database); idempotent.
func (s *source) stop() {
	s.cancel()
	<-s.done
}

// waitPublished waits until JetStream acknowledged seq.
func (s *source) waitPublished(seq int64) {
	s.t.Helper()
	testenv.WaitFor(s.t, timeout, "publish up to the database's head", func() bool { return s.pub.Published() >= seq })
}

// head is the database's head seq.
func (s *source) head() int64 {
	s.t.Helper()
	p, err := s.d.Log.Position(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return p.Head
}

// openDB opens path with capture installed, closed at cleanup.
func openDB(t *testing.T, path string) *testdb.DB {
	t.Helper()
	return testdb.Install(t, path, testdb.Options{})
}

// edge is `sqlws edge` in process: an Edge served over HTTP.
type edge struct {
	e    *broker.Edge
	http *httptest.Server
	url  string
}

func startEdge(t *testing.T, ns *natstest.Server, stream string, opts broker.EdgeOptions) *edge {
	t.Helper()
	nc, err := broker.Connect(ns.URL, broker.ConnOptions{Name: "test edge"})
	if err != nil {
		t.Fatal(err)
	}
	opts.Stream = stream
	e, err := broker.NewEdge(nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	mux := http.NewServeMux()
	mux.Handle("/ws", e)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		nc.Close()
	})
	ed := &edge{e: e, http: srv, url: srv.URL}
	testenv.WaitFor(t, timeout, "edge ready", func() bool { return e.Ready(context.Background()) == nil })
	return ed
}

func (e *edge) dial(t *testing.T) *testenv.Client { return testenv.Dial(t, e.url+"/ws") }

// streamInfo reads the stream's info.
func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	return natstest.StreamInfo(t, js, name)
}

// openSource opens the JetStream side of stream name, as an edge reads it.
func openSource(t *testing.T, js jetstream.JetStream, name string) *broker.Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	src, err := broker.OpenSource(ctx, js, name, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// readAll reads the whole stream through src from after on: the records up to the
// first gap, and whether there was one.
func readAll(t *testing.T, src *broker.Source, after int64) (out []models.Encoded, gap bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		recs, err := src.ReadChanges(ctx, after, 512, 1<<20)
		out = append(out, recs...)
		if errors.Is(err, models.ErrGap) {
			return out, true
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out, false
		}
		after = recs[len(recs)-1].Seq
	}
}

// readDB reads the database's changelog from after on, as the source serves it.
func readDB(t *testing.T, d *testdb.DB, after int64) (out []models.Encoded, gap bool) {
	t.Helper()
	ctx := context.Background()
	for {
		recs, err := d.Log.ReadChanges(ctx, after, 1000, 4<<20)
		out = append(out, recs...)
		if errors.Is(err, models.ErrGap) {
			return out, true
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out, false
		}
		after = recs[len(recs)-1].Seq
	}
}

// sameRecords fails unless got and want are the same records, byte for byte.
func sameRecords(t *testing.T, got, want []models.Encoded) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Seq != want[i].Seq || got[i].Table != want[i].Table || string(got[i].JSON) != string(want[i].JSON) {
			t.Fatalf("record %d differs:\n got  %d %q %s\n want %d %q %s", i, got[i].Seq, got[i].Table, got[i].JSON, want[i].Seq, want[i].Table, want[i].JSON)
		}
	}
}
