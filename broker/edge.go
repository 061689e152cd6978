package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/internal/faillog"
	"github.com/sqlws/sqlws/metrics"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/ws"
)

// EdgeOptions configure an Edge. Zero values take the defaults shown.
type EdgeOptions struct {
	// Stream is the JetStream stream's name (default DefaultStream).
	Stream string
	Window fanout.Options
	Hub    ws.Options
	// HeadWait bounds how long a subscribe whose since is beyond the stream's last
	// sequence waits for the stream to reach it before it is answered reset future
	// (default 5s): a client may have read that seq from the source's REST a moment
	// before the publisher got it to JetStream.
	HeadWait time.Duration
	// ReadyLag is the most changes the edge may be behind the stream's last sequence
	// and count as ready, once it has caught up for the first time (default 10,000).
	ReadyLag int64
	// Listener, if set, is reported in the metrics (connections, refusals).
	Listener interface {
		Open() int
		MaxConns() int
		Refused() uint64
	}
	Logger *slog.Logger
}

func (o *EdgeOptions) setDefaults() {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.HeadWait <= 0 {
		o.HeadWait = 5 * time.Second
	}
	if o.ReadyLag <= 0 {
		o.ReadyLag = 10_000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Hub.Logger == nil {
		o.Hub.Logger = o.Logger
	}
}

// Edge serves a database's change stream to WebSocket clients from its JetStream
// stream: a Source for history and positions, one ordered consumer feeding a
// fanout.Window through a ws.Hub, and the schema bucket for the tables and drops.
//
// If the stream is removed or created again (NATS lost its store, or the source
// found the stream ahead of its database and started it afresh), the sequence no
// longer continues what clients hold: the edge closes every connection with 1001
// and serves the new stream with a new window, and clients that resume get the
// reset the source would give them.
type Edge struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts EdgeOptions
	log  *slog.Logger

	cur atomic.Pointer[generation] // nil while no stream is served
}

// NewEdge returns an edge serving the stream over nc; Run runs it.
func NewEdge(nc *nats.Conn, opts EdgeOptions) (*Edge, error) {
	opts.setDefaults()
	if err := ValidateStreamName(opts.Stream); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Edge{nc: nc, js: js, opts: opts, log: opts.Logger.With("nats_stream", opts.Stream)}, nil
}

// Run serves the stream until ctx is done, waiting for it to exist first, and then
// closes every connection with 1001 (for at most 4 seconds) before it returns.
func (e *Edge) Run(ctx context.Context) {
	for {
		g := e.open(ctx)
		if g == nil {
			return // ctx done
		}
		e.cur.Store(g)
		why := g.wait(ctx)
		e.cur.Store(nil)
		g.close()
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("the JetStream stream changed: closed every connection; serving the new stream", "why", why)
	}
}

// ServeHTTP serves GET /ws with the current stream's hub; 503 while there is none.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := e.cur.Load()
	if g == nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error":{"code":"unavailable","message":"waiting for JetStream stream %s; retry"}}`+"\n", e.opts.Stream)
		return
	}
	g.hub.ServeHTTP(w, r)
}

// MetricsHandler serves the current stream's metrics (Prometheus): those of a
// source's /metrics, where the tailer's figures are the edge's consumer's —
// sqlws_tailer_lag_changes is how far the edge is behind JetStream.
func (e *Edge) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := e.cur.Load()
		if g == nil {
			http.Error(w, "no stream served yet", http.StatusServiceUnavailable)
			return
		}
		g.metrics.Handler().ServeHTTP(w, r)
	})
}

// Status is what an edge says about its progress.
type Status struct {
	Stream    string // the database's stream id; "" while no stream is served
	Head      int64  // JetStream's last sequence
	Delivered int64  // the last sequence the edge's consumer handed to its window
	Lag       int64  // Head - Delivered
	CaughtUp  bool   // the edge has reached the last sequence it found at start
	Connected bool   // connected to NATS
}

// Status reads the stream's position and the edge's place in it.
func (e *Edge) Status(ctx context.Context) (Status, error) {
	st := Status{Connected: e.nc.IsConnected()}
	g := e.cur.Load()
	if g == nil {
		return st, fmt.Errorf("waiting for JetStream stream %s", e.opts.Stream)
	}
	st.Stream, st.Delivered, st.CaughtUp = g.src.StreamID(), g.fed.Load(), g.caughtUp.Load()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	p, err := g.src.Position(ctx)
	if err != nil {
		return st, err
	}
	st.Head, st.Lag = p.Head, max(p.Head-st.Delivered, 0)
	return st, nil
}

// Ready reports whether the edge can serve: connected, serving a stream whose
// schema it has, caught up once with the stream's last sequence, and no more than
// ReadyLag behind it. The error says why not.
func (e *Edge) Ready(ctx context.Context) error {
	st, err := e.Status(ctx)
	switch {
	case !st.Connected:
		return errors.New("not connected to NATS")
	case err != nil:
		return err
	case !st.CaughtUp:
		return fmt.Errorf("catching up with JetStream: at seq %d of %d", st.Delivered, st.Head)
	case st.Lag > e.opts.ReadyLag:
		return fmt.Errorf("%d changes behind JetStream (more than %d)", st.Lag, e.opts.ReadyLag)
	}
	return nil
}

// Hub is the hub of the stream served; nil while none is.
func (e *Edge) Hub() *ws.Hub {
	if g := e.cur.Load(); g != nil {
		return g.hub
	}
	return nil
}

// Tables is the tracked tables of the stream served, as the source published them.
func (e *Edge) Tables() []models.Table {
	if g := e.cur.Load(); g != nil {
		return g.schema.Tables()
	}
	return nil
}

// open waits until the stream and its schema exist and starts serving them; nil
// once ctx is done.
func (e *Edge) open(ctx context.Context) *generation {
	var fail faillog.Episode
	backoff := minBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		g, err := e.start(ctx)
		if err == nil {
			fail.OK(e.log, "serving the JetStream stream")
			e.log.Info("serving the JetStream stream", "stream", g.src.StreamID(), "first_seq", g.win.Stats().First, "target_seq", g.target)
			return g
		}
		if ctx.Err() != nil {
			return nil
		}
		fail.Fail(e.log, "cannot serve the JetStream stream yet; will retry", err)
		timer.Reset(backoff)
		backoff = min(2*backoff, maxBackoff)
	}
}

// generation is the serving of one stream, from its start until it changes (or the
// edge stops): its window, hub and consumer.
type generation struct {
	e      *Edge
	src    *Source
	kv     jetstream.KeyValue
	schema *schema
	win    *fanout.Window
	hub    *ws.Hub

	metrics *metrics.Metrics
	target  int64 // the stream's last sequence at the start

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	cc     jetstream.ConsumeContext

	fed      atomic.Int64 // the last sequence handed to the window (tombstones too)
	caughtUp atomic.Bool

	// Changes the consumer delivered, waiting for the feeder.
	bufMu   sync.Mutex
	buf     []models.Encoded
	spare   []models.Encoded
	upTo    int64         // the last sequence delivered
	drained chan struct{} // closed when the feeder takes buf
	feed    chan struct{} // buffered 1: buf has something

	stale atomic.Bool // the stream changed: deliver nothing more
	// schemaMissing is the highest schema revision a change named that the bucket
	// turned out not to have.
	schemaMissing atomic.Uint64
	changeOnce    sync.Once
	changed       chan struct{} // closed when the stream changed
	why           error
}

// maxBuffered bounds the changes delivered and not yet in the window: past it the
// consumer waits for the feeder (and JetStream for the consumer).
const maxBuffered = 20_000

// start opens the stream and its schema and starts the consumer from just before
// what the window should hold: a full window behind the last sequence, so that
// clients resuming after the edge's restart are served from memory.
func (e *Edge) start(ctx context.Context) (g *generation, err error) {
	src, err := OpenSource(ctx, e.js, e.opts.Stream, e.opts.HeadWait, e.log)
	if err != nil {
		return nil, err
	}
	kv, err := e.js.KeyValue(ctx, SchemaBucket(e.opts.Stream))
	if err != nil {
		return nil, fmt.Errorf("schema bucket %s: %w", SchemaBucket(e.opts.Stream), err)
	}
	pos, err := src.Position(ctx)
	if err != nil {
		return nil, err
	}
	windowChanges := int64(e.opts.Window.WindowChanges)
	if windowChanges <= 0 {
		windowChanges = 100_000
	}
	first := max(pos.Oldest-1, pos.Head-windowChanges)
	g = &generation{e: e, src: src, kv: kv, target: pos.Head,
		drained: make(chan struct{}), feed: make(chan struct{}, 1), changed: make(chan struct{})}
	src.onChange = g.streamChanged
	g.win = fanout.NewWindow(src, first, e.opts.Window)
	g.schema = newSchema(src.StreamID(), func(d []models.Drop) { g.hub.TableDropped(d) })
	g.hub = ws.NewHub(g.win, g.schema, e.opts.Hub)
	g.fed.Store(first)
	g.upTo = first
	g.caughtUp.Store(first >= g.target)
	g.ctx, g.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	if err := g.schema.load(ctx, kv); err != nil {
		return g, err
	}
	if !g.schema.Known() {
		return g, fmt.Errorf("the source has not published its tables to %s yet", SchemaBucket(e.opts.Stream))
	}
	g.metrics = metrics.New(metrics.Sources{Hub: g.hub, Tailed: g.fed.Load, TailStart: first, Position: src.Position,
		Listener: e.opts.Listener, MemoryBudget: g.win.Options().MemoryBudget, ReadyLag: e.opts.ReadyLag})
	g.wg.Add(3)
	go g.feeder()
	go g.watchSchema()
	go g.watchStream()
	cons, err := src.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   uint64(first + 1),
	})
	if err != nil {
		return g, fmt.Errorf("consume stream %s: %w", e.opts.Stream, err)
	}
	g.cc, err = cons.Consume(g.onMsg, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// The ordered consumer recreates itself from the last sequence it delivered
		// (after a reconnect, a missed heartbeat, a NATS restart); worth a line only.
		e.log.Debug("consume stream", "err", err)
	}))
	if err != nil {
		return g, fmt.Errorf("consume stream %s: %w", e.opts.Stream, err)
	}
	return g, nil
}

// wait blocks until ctx is done or the stream changed, and says which.
func (g *generation) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-g.changed:
		return g.why
	}
}

// close stops the consumer and the goroutines and closes every connection.
func (g *generation) close() {
	g.cancel()
	if g.cc != nil {
		g.cc.Stop()
		select {
		case <-g.cc.Closed():
		case <-time.After(5 * time.Second):
			g.e.log.Warn("the stream's consumer did not stop within 5s")
		}
	}
	g.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	g.hub.Close(ctx)
}

func (g *generation) streamChanged(why error) {
	g.stale.Store(true)
	g.changeOnce.Do(func() {
		g.why = why
		close(g.changed)
	})
}

// onMsg takes one message from the consumer (on the consumer's goroutine): brings
// the schema up to the revision the change was published after, then queues it for
// the window.
func (g *generation) onMsg(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		g.e.log.Error("consume stream: message without JetStream metadata", "err", err)
		return
	}
	if g.stale.Load() {
		return
	}
	if meta.Sequence.Consumer == 1 {
		// The first message of a consumer: the ordered consumer was (re)created,
		// after a reconnect or the loss of its consumer — perhaps on a stream created
		// again under the same name, whose sequence no longer continues this one's.
		// Deliver nothing until that is ruled out.
		ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
		err := g.src.identity(ctx)
		cancel()
		if err != nil {
			g.stale.Store(true)
			g.streamChanged(err)
			return
		}
	}
	seq := int64(meta.Sequence.Stream)
	g.src.noteLast(seq + int64(meta.NumPending))
	if r := m.Headers().Get(HeaderSchema); r != "" {
		if rev, err := strconv.ParseUint(r, 10, 64); err == nil && rev > g.schema.applied.Load() && rev > g.schemaMissing.Load() {
			g.catchUpSchema(rev)
		}
	}
	e, ok := g.src.decode(seq, m.Subject(), m.Headers(), m.Data())
	g.bufMu.Lock()
	for len(g.buf) >= maxBuffered && g.ctx.Err() == nil {
		drained := g.drained
		g.bufMu.Unlock()
		select {
		case <-drained:
		case <-g.ctx.Done():
		}
		g.bufMu.Lock()
	}
	if seq <= g.upTo {
		// A message of a consumer the ordered consumer has already replaced, still in
		// flight: what follows it was delivered, and the window must only move on.
		g.bufMu.Unlock()
		return
	}
	if ok {
		g.buf = append(g.buf, e)
	}
	g.upTo = seq
	g.bufMu.Unlock()
	select {
	case g.feed <- struct{}{}:
	default:
	}
}

// catchUpSchema reads the schema bucket until it has applied revision rev (which a
// change carries: a drop before it must end subscriptions before it is delivered),
// retrying while the bucket cannot be read, until the generation ends.
func (g *generation) catchUpSchema(rev uint64) {
	var fail faillog.Episode
	backoff := minBackoff
	for g.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
		err := g.schema.load(ctx, g.kv)
		cancel()
		if err == nil {
			fail.OK(g.e.log, "read the schema bucket again")
			if g.schema.applied.Load() < rev {
				// Not there to wait for (the bucket was replaced): stop asking for it.
				g.schemaMissing.Store(rev)
				g.e.log.Warn("a change names a schema revision the bucket does not have; going on", "revision", rev, "bucket_revision", g.schema.applied.Load())
			}
			return
		}
		fail.Fail(g.e.log, "cannot read the schema bucket a change depends on; will retry", err)
		select {
		case <-g.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// feeder hands what the consumer delivered to the window, in batches: one wake-up
// of the hub's pumps per batch rather than per change.
func (g *generation) feeder() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-g.feed:
		}
		g.bufMu.Lock()
		batch, upTo, drained := g.buf, g.upTo, g.drained
		g.buf, g.spare = g.spare, nil
		g.drained = make(chan struct{})
		g.bufMu.Unlock()
		close(drained)
		g.hub.Publish(batch)
		g.fed.Store(upTo)
		if upTo >= g.target && !g.caughtUp.Load() {
			g.caughtUp.Store(true)
			g.e.log.Info("caught up with JetStream", "seq", upTo)
		}
		clear(batch) // the window copied the entries; keep no reference to their JSON
		g.bufMu.Lock()
		g.spare = batch[:0]
		g.bufMu.Unlock()
	}
}

// watchSchema applies the schema bucket's updates as they come, rewatching when a
// watch ends (a NATS restart).
func (g *generation) watchSchema() {
	defer g.wg.Done()
	backoff := minBackoff
	for g.ctx.Err() == nil {
		w, err := g.kv.WatchAll(g.ctx)
		if err == nil {
			backoff = minBackoff
			g.follow(w)
			w.Stop()
		}
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (g *generation) follow(w jetstream.KeyWatcher) {
	for {
		select {
		case <-g.ctx.Done():
			return
		case ent, ok := <-w.Updates():
			if !ok {
				return
			}
			if err := g.schema.apply(ent); err != nil {
				g.e.log.Error("schema bucket", "err", err)
			}
		}
	}
}

// watchStream checks every second that the stream is still the one served.
func (g *generation) watchStream() {
	defer g.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
		err := g.src.identity(ctx)
		cancel()
		if err != nil && g.ctx.Err() == nil {
			g.streamChanged(err)
			return
		}
	}
}
