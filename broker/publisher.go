package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/internal/faillog"
	"github.com/sqlws/sqlws/models"
)

// PublisherOptions configure a Publisher. Zero values take the defaults shown.
type PublisherOptions struct {
	// Stream is the JetStream stream's name (default DefaultStream).
	Stream string
	// MaxAge and MaxBytes bound what the stream keeps (0: no bound): the history
	// edges can resume from. See docs/scaling.md for sizing them.
	MaxAge   time.Duration
	MaxBytes int64
	// Batch and BatchBytes bound one read of the changelog, published as one
	// pipeline of asynchronous publishes (defaults 1,000 and 4 MiB).
	Batch      int
	BatchBytes int
	// Tables is the database's tracked tables, published to the schema bucket for
	// edges; nil publishes none.
	Tables func() []models.Table
	Logger *slog.Logger
}

func (o *PublisherOptions) setDefaults() {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Tunables of the publisher.
const (
	// maxTombstones is the largest hole in the middle of the changelog published as
	// tombstones (which keeps the history before it); a larger one is purged.
	maxTombstones = 10_000
	// schemaEvery is how often the schema is compared with what was published, for
	// changes (a column added, an empty table created) no change record reveals.
	schemaEvery = time.Second
	// idlePoll is how often the publisher looks at the changelog without being
	// woken: a safety net, every change also wakes it.
	idlePoll = time.Second
	// asyncAckTimeout bounds the wait for JetStream to acknowledge one publish.
	asyncAckTimeout = 10 * time.Second
	// duplicateWindow is the stream's message-id window. The expected-last-sequence
	// check is what keeps each seq stored once; the id only names the message, so
	// the window (which JetStream keeps in memory) stays short.
	duplicateWindow = 10 * time.Second
)

// Publisher publishes a database's changes to its JetStream stream (see the package
// comment), reading them from the changelog (a fanout.Source) up to what the tailer
// has seen (Tailed), so that a table drop the tailer reports is in the schema bucket
// before any change after it is published.
//
// Setup (optional) and Run must be called from one goroutine, in that order; Tailed
// and TableDropped from any.
type Publisher struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	src  fanout.Source
	opts PublisherOptions
	log  *slog.Logger
	id   string // the database's stream id
	pre  string // subjectPrefix(id)

	wake      chan struct{} // buffered 1: Tailed or TableDropped happened
	tailed    atomic.Int64  // the last seq the tailer has read
	published atomic.Int64  // the last seq JetStream acknowledged
	ready     atomic.Bool   // stream state known and published up to it

	dropsMu    sync.Mutex
	drops      []models.Drop
	dropsSeen  map[models.Drop]bool
	dropsDirty bool

	// Owned by the Setup/Run goroutine.
	stream     jetstream.Stream
	kv         jetstream.KeyValue
	next       int64 // the next seq to publish; valid while synced
	synced     bool  // stream, bucket and next are known
	schemaRev  uint64
	lastTables []byte
	tableSet   map[string]bool
	tablesAt   time.Time
	msgs       []*nats.Msg
	seqs       []int64
	fail       faillog.Episode
}

// NewPublisher returns a publisher of src's changes over nc. It publishes nothing
// until Tailed tells it how far the tailer has read.
func NewPublisher(nc *nats.Conn, src fanout.Source, opts PublisherOptions) (*Publisher, error) {
	opts.setDefaults()
	if err := ValidateStreamName(opts.Stream); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4*opts.Batch), jetstream.WithPublishAsyncTimeout(asyncAckTimeout))
	if err != nil {
		return nil, err
	}
	id := src.StreamID()
	return &Publisher{
		nc: nc, js: js, src: src, opts: opts, log: opts.Logger.With("nats_stream", opts.Stream),
		id: id, pre: subjectPrefix(id),
		wake: make(chan struct{}, 1), dropsSeen: map[models.Drop]bool{},
	}, nil
}

// Tailed tells the publisher that the tailer has read the changelog up to seq. Call
// it with the seq the tailer starts after, then from the tailer's sink with the
// last seq of each batch, after the batch went to the local hub. It never blocks.
func (p *Publisher) Tailed(seq int64) {
	for {
		cur := p.tailed.Load()
		if seq <= cur || p.tailed.CompareAndSwap(cur, seq) {
			break
		}
	}
	p.poke()
}

// TableDropped records captured tables that stopped existing (the tailer's Dropped
// callback); they reach the schema bucket before any later change is published. It
// never blocks.
func (p *Publisher) TableDropped(drops []models.Drop) {
	p.dropsMu.Lock()
	for _, d := range drops {
		if !p.dropsSeen[d] {
			p.dropsSeen[d] = true
			p.drops = append(p.drops, d)
			p.dropsDirty = true
		}
	}
	p.dropsMu.Unlock()
	p.poke()
}

func (p *Publisher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Published is the last seq JetStream has acknowledged (0 before the first).
func (p *Publisher) Published() int64 { return p.published.Load() }

// Ready reports whether the stream is reachable and the publisher has published
// everything the tailer has read.
func (p *Publisher) Ready() bool {
	return p.ready.Load() && p.published.Load() >= p.tailed.Load()
}

// Setup makes sure the stream and the schema bucket exist and match this database,
// creating them if need be, and reads where publishing resumes. Run does it too;
// calling it first makes the stream exist before the server announces itself. It
// fails with a *ForeignStreamError if the stream belongs to another database.
func (p *Publisher) Setup(ctx context.Context) error {
	if !p.nc.IsConnected() {
		return errNotConnected
	}
	if err := p.sync(ctx); err != nil {
		return err
	}
	return p.syncSchema(ctx, nil, true)
}

// ErrStreamConflict is what every error of a stream that belongs to someone else
// wraps: its name is taken by another database's stream (a ForeignStreamError), or
// another stream holds this database's subjects. Retrying cannot help; an operator
// must choose.
var ErrStreamConflict = errors.New("JetStream stream conflict")

// ForeignStreamError says the stream name is taken by another database's stream.
type ForeignStreamError struct {
	Stream, Want, Have string
}

// Unwrap makes the error an ErrStreamConflict.
func (e *ForeignStreamError) Unwrap() error { return ErrStreamConflict }

func (e *ForeignStreamError) Error() string {
	if e.Have == "" {
		return fmt.Sprintf("JetStream stream %s exists and is not a sqlws stream (no %s metadata); choose another --nats-stream, or remove it", e.Stream, MetaStreamID)
	}
	return fmt.Sprintf("JetStream stream %s carries another database's changes (stream %s, this database is %s); choose another --nats-stream, or remove that stream (nats stream rm %s) if the other database is gone", e.Stream, e.Have, e.Want, e.Stream)
}

// Run publishes until ctx is done, retrying every failure (NATS down, a stream
// deleted under it, a conflict with another publisher) from what JetStream holds.
func (p *Publisher) Run(ctx context.Context) {
	backoff := minBackoff
	timer := time.NewTimer(idlePoll)
	defer timer.Stop()
	// A reconnect ends a back-off at once: NATS is back, and edges wait for what
	// the source has.
	connected := p.nc.StatusChanged(nats.CONNECTED)
	defer p.nc.RemoveStatusListener(connected)
	for {
		err := p.step(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := idlePoll
		if err != nil {
			p.ready.Store(false)
			p.synced = false
			if errors.Is(err, errResync) {
				wait = 0
			} else {
				p.fail.Fail(p.log, "publish to JetStream failing; will retry", err)
				wait = backoff
				backoff = min(2*backoff, maxBackoff)
			}
		} else {
			backoff = minBackoff
			p.fail.OK(p.log, "publishing to JetStream again")
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			case <-connected:
				backoff = minBackoff
			case <-p.wake:
				if err != nil {
					// A failure waits out its back-off whatever else wakes it.
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					case <-connected:
						backoff = minBackoff
					}
				}
			}
			timer.Stop()
		}
	}
}

// Bounds of the back-off between failed attempts.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// errCodeSubjectOverlap is JetStream's "subjects overlap with an existing stream"
// (nats.go names no constant for it).
const errCodeSubjectOverlap jetstream.ErrorCode = 10065

// errResync ends a step whose publishes JetStream refused because it already holds
// some of them: read its last sequence and go on at once.
var errResync = errors.New("resync with the stream's last sequence")

// errNotConnected says what a request fails with while NATS is unreachable, more
// plainly than the client's own error.
var errNotConnected = errors.New("not connected to NATS")

// errNotYet says a hole could not be placed because the changes after it went too
// (pruned meanwhile): look again on the next wake-up rather than spin.
var errNotYet = errors.New("nothing after the hole yet")

// step publishes everything the tailer has read that JetStream does not hold.
func (p *Publisher) step(ctx context.Context) error {
	if !p.nc.IsConnected() {
		return errNotConnected
	}
	if !p.synced {
		if err := p.sync(ctx); err != nil {
			return err
		}
	}
	if err := p.syncSchema(ctx, nil, false); err != nil {
		return err
	}
	for ctx.Err() == nil {
		tailed := p.tailed.Load()
		if p.next > tailed {
			p.ready.Store(true)
			return nil
		}
		recs, err := p.src.ReadChanges(ctx, p.next-1, int(min(int64(p.opts.Batch), tailed-p.next+1)), p.opts.BatchBytes)
		gap := errors.Is(err, models.ErrGap)
		if err != nil && !gap {
			return fmt.Errorf("read changelog after %d: %w", p.next-1, err)
		}
		if len(recs) > 0 {
			if err := p.syncSchema(ctx, recs, false); err != nil {
				return err
			}
			if err := p.publish(ctx, recs, nil); err != nil {
				return err
			}
			continue
		}
		// Nothing at p.next, yet the tailer read past it: a hole.
		if err := p.skipHole(ctx, tailed); err != nil {
			if errors.Is(err, errNotYet) {
				p.ready.Store(true)
				return nil
			}
			return err
		}
	}
	return ctx.Err()
}

// sync makes sure the stream and the bucket exist and reads the stream's last
// sequence: publishing resumes after it.
func (p *Publisher) sync(ctx context.Context) error {
	s, err := p.js.Stream(ctx, p.opts.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if s, err = p.create(ctx); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("read stream %s: %w", p.opts.Stream, err)
	}
	info := s.CachedInfo()
	if have := info.Config.Metadata[MetaStreamID]; have != p.id {
		return &ForeignStreamError{Stream: p.opts.Stream, Want: p.id, Have: have}
	}
	// Read after the stream, so a head that another publisher of this database
	// reached meanwhile is not mistaken for the stream being ahead.
	pos, err := p.src.Position(ctx)
	if err != nil {
		return fmt.Errorf("read changelog position: %w", err)
	}
	if last := int64(info.State.LastSeq); last > pos.Head {
		// The stream holds changes this database never made: the file was restored
		// from an older backup (or replaced by a copy). Continuing would give new
		// changes seqs the stream already holds with other content. Start the stream
		// afresh from this database; edges notice the new stream, close their
		// connections, and clients resuming from the lost timeline get reset future,
		// as they would from the source.
		p.log.Warn("the JetStream stream is ahead of the database (restored from a backup?): recreating it from the database",
			"stream_last", last, "db_head", pos.Head)
		if err := p.js.DeleteStream(ctx, p.opts.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", p.opts.Stream, err)
		}
		return p.sync(ctx)
	}
	if err := p.updateLimits(ctx, info); err != nil {
		return err
	}
	kv, err := p.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      SchemaBucket(p.opts.Stream),
		Description: "sqlws schema of stream " + p.opts.Stream + " (tables, dropped tables)",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("schema bucket %s: %w", SchemaBucket(p.opts.Stream), err)
	}
	p.stream, p.kv = s, kv
	p.next = int64(info.State.LastSeq) + 1
	p.published.Store(p.next - 1)
	p.synced = true
	// Put the schema again, and stamp changes with its new revision: the bucket may
	// be new (NATS lost its store), its revisions starting over.
	p.lastTables, p.schemaRev = nil, 0
	return nil
}

// create creates the stream starting at the changelog's oldest retained seq, so
// that edges can serve everything the source can.
func (p *Publisher) create(ctx context.Context) (jetstream.Stream, error) {
	pos, err := p.src.Position(ctx)
	if err != nil {
		return nil, fmt.Errorf("read changelog position: %w", err)
	}
	first := max(pos.Oldest, 1)
	s, err := p.js.CreateStream(ctx, p.config(first))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return p.js.Stream(ctx, p.opts.Stream) // another publisher was quicker
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeSubjectOverlap {
		return nil, fmt.Errorf("%w: create stream %s: another JetStream stream already holds this database's subjects %s> (one stream per database and account; use that stream's name as --nats-stream): %v", ErrStreamConflict, p.opts.Stream, p.pre, err)
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", p.opts.Stream, err)
	}
	p.log.Info("created JetStream stream", "first_seq", first, "subjects", p.pre+">")
	// Drops recorded for an earlier stream of this name are not this one's: publish
	// what this database knows.
	p.dropsMu.Lock()
	p.dropsDirty = true
	p.dropsMu.Unlock()
	return s, nil
}

func (p *Publisher) config(first int64) jetstream.StreamConfig {
	dup := duplicateWindow
	if p.opts.MaxAge > 0 {
		dup = min(dup, p.opts.MaxAge)
	}
	return jetstream.StreamConfig{
		Name:        p.opts.Stream,
		Description: "sqlws change stream of database " + p.id,
		Subjects:    []string{p.pre + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		MaxAge:      p.opts.MaxAge,
		MaxBytes:    orUnlimited(p.opts.MaxBytes),
		MaxMsgs:     -1,
		Duplicates:  dup,
		FirstSeq:    uint64(first),
		AllowDirect: true,
		Metadata:    map[string]string{MetaStreamID: p.id},
	}
}

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// updateLimits applies --nats-max-age and --nats-max-bytes to an existing stream.
func (p *Publisher) updateLimits(ctx context.Context, info *jetstream.StreamInfo) error {
	cfg := info.Config
	want := p.config(int64(cfg.FirstSeq))
	if cfg.MaxAge == want.MaxAge && cfg.MaxBytes == want.MaxBytes && cfg.Duplicates == want.Duplicates {
		return nil
	}
	cfg.MaxAge, cfg.MaxBytes, cfg.Duplicates = want.MaxAge, want.MaxBytes, want.Duplicates
	if _, err := p.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update stream %s limits: %w", p.opts.Stream, err)
	}
	p.log.Info("updated JetStream stream limits", "max_age", cfg.MaxAge, "max_bytes", cfg.MaxBytes)
	return nil
}

// syncSchema puts the tables and the drops into the bucket if they changed. It looks
// at the tables when forced, every schemaEvery, or when recs name a table it has not
// published.
func (p *Publisher) syncSchema(ctx context.Context, recs []models.Encoded, force bool) error {
	if p.opts.Tables != nil {
		look := force || p.lastTables == nil || time.Since(p.tablesAt) >= schemaEvery
		for i := 0; !look && i < len(recs); i++ {
			look = !p.tableSet[recs[i].Table]
		}
		if look {
			tables := p.opts.Tables()
			b, err := json.Marshal(tablesDoc{Stream: p.id, Tables: tables})
			if err != nil {
				return err
			}
			if !bytes.Equal(b, p.lastTables) {
				rev, err := p.kv.Put(ctx, keyTables, b)
				if err != nil {
					return fmt.Errorf("put schema: %w", err)
				}
				p.schemaRev = max(p.schemaRev, rev)
				p.lastTables = b
				p.tableSet = make(map[string]bool, len(tables))
				for _, t := range tables {
					p.tableSet[t.Name] = true
				}
			}
			p.tablesAt = time.Now()
		}
	}
	p.dropsMu.Lock()
	dirty := p.dropsDirty
	b := encodeDrops(p.id, p.drops)
	p.dropsDirty = false
	p.dropsMu.Unlock()
	if dirty {
		rev, err := p.kv.Put(ctx, keyDrops, b)
		if err != nil {
			p.dropsMu.Lock()
			p.dropsDirty = true
			p.dropsMu.Unlock()
			return fmt.Errorf("put dropped tables: %w", err)
		}
		p.schemaRev = max(p.schemaRev, rev)
	}
	return nil
}

// publish publishes recs (consecutive, from p.next on) — or, with recs nil,
// tombstones for seqs — as one pipeline of asynchronous publishes, each expecting
// the one before it as the stream's last, and advances p.next past what JetStream
// acknowledged.
func (p *Publisher) publish(ctx context.Context, recs []models.Encoded, gaps []int64) error {
	p.msgs, p.seqs = p.msgs[:0], p.seqs[:0]
	rev := strconv.FormatUint(p.schemaRev, 10)
	// What a message's headers and subject add to its payload, generously.
	room := p.nc.MaxPayload() - 1024
	for _, r := range recs {
		if r.JSON == nil {
			p.msgs = append(p.msgs, &nats.Msg{Subject: p.pre + markToken, Header: nats.Header{HeaderMark: []string{"1"}, HeaderSchema: []string{rev}}})
			p.seqs = append(p.seqs, r.Seq)
			continue
		}
		m := &nats.Msg{Subject: p.pre + EscapeToken(r.Table), Data: r.JSON, Header: nats.Header{HeaderSchema: []string{rev}}}
		if room > 0 && int64(len(r.JSON)) > room {
			p.log.Error("change larger than NATS allows (max_payload): published as a gap; edge clients that need it get reset pruned",
				"seq", r.Seq, "table", r.Table, "bytes", len(r.JSON), "max_payload", p.nc.MaxPayload())
			m = &nats.Msg{Subject: m.Subject, Header: nats.Header{HeaderGap: []string{"too_large"}, HeaderSchema: []string{rev}}}
		}
		p.msgs = append(p.msgs, m)
		p.seqs = append(p.seqs, r.Seq)
	}
	for _, seq := range gaps {
		p.msgs = append(p.msgs, &nats.Msg{Subject: p.pre + gapToken, Header: nats.Header{HeaderGap: []string{"missing"}, HeaderSchema: []string{rev}}})
		p.seqs = append(p.seqs, seq)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(p.msgs))
	var sendErr error
	for i, m := range p.msgs {
		seq := p.seqs[i]
		f, err := p.js.PublishMsgAsync(m,
			jetstream.WithExpectLastSequence(uint64(seq-1)),
			jetstream.WithMsgID(p.id+":"+strconv.FormatInt(seq, 10)))
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if int64(ack.Sequence) != p.seqs[i] && !ack.Duplicate {
				// Cannot happen while every publish expects its predecessor; if it
				// does, the stream is not what this publisher thinks it is.
				return fmt.Errorf("JetStream stored seq %d as %d", p.seqs[i], ack.Sequence)
			}
			p.next = p.seqs[i] + 1
			p.published.Store(p.seqs[i])
		case err := <-f.Err():
			p.settle()
			if wrongLastSeq(err) {
				// Routine with two sources on one file, and after a lost ack: debug only.
				p.log.Debug("JetStream already holds changes this publisher was sending; resuming after its last", "seq", p.seqs[i], "err", err)
				return errResync
			}
			return fmt.Errorf("publish seq %d: %w", p.seqs[i], err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if sendErr != nil {
		p.settle()
		return fmt.Errorf("publish seq %d: %w", p.seqs[len(futures)], sendErr)
	}
	return nil
}

// settle waits (bounded) for publishes still in flight after a failure, so that the
// last sequence read next is not overtaken by one of them.
func (p *Publisher) settle() {
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(asyncAckTimeout):
	}
}

// skipHole deals with a hole at p.next (see the package comment) and advances p.next
// to the seq after it. The tailer has read up to tailed, past the hole.
func (p *Publisher) skipHole(ctx context.Context, tailed int64) error {
	pos, err := p.src.Position(ctx)
	if err != nil {
		return fmt.Errorf("read changelog position: %w", err)
	}
	if pos.Oldest > p.next {
		// Retention pruned what was not yet published: everything before is gone on
		// the source too. Start the stream at the oldest seq left.
		return p.purgeTo(ctx, pos.Oldest, "pruned before it was published")
	}
	// A hole in the middle: find where the changelog resumes, one seq at a time
	// (sources only read consecutive changes; such holes come from rows deleted by
	// hand and are small).
	for x := p.next; x < tailed; x++ {
		if (x-p.next)%1000 == 999 && ctx.Err() != nil {
			return ctx.Err()
		}
		recs, err := p.src.ReadChanges(ctx, x, 1, 0)
		switch {
		case len(recs) > 0:
			n := x + 1
			p.log.Warn("hole in the changelog (rows deleted from sqlws_changes?): edge clients that need the missing changes get reset pruned",
				"missing_from", p.next, "missing_to", n-1)
			if n-p.next > maxTombstones {
				return p.purgeTo(ctx, n, "hole too large for tombstones")
			}
			for p.next < n {
				gaps := make([]int64, 0, min(n-p.next, int64(p.opts.Batch)))
				for s := p.next; s < n && len(gaps) < p.opts.Batch; s++ {
					gaps = append(gaps, s)
				}
				if err := p.publish(ctx, nil, gaps); err != nil {
					return err
				}
			}
			return nil
		case errors.Is(err, models.ErrGap):
			continue
		case err != nil:
			return fmt.Errorf("read changelog after %d: %w", x, err)
		default:
			return errNotYet
		}
	}
	return errNotYet
}

// purgeTo purges the stream up to seq: JetStream then starts at seq, and the next
// publish is seq.
func (p *Publisher) purgeTo(ctx context.Context, seq int64, why string) error {
	if err := p.stream.Purge(ctx, jetstream.WithPurgeSequence(uint64(seq))); err != nil {
		return fmt.Errorf("purge stream to %d: %w", seq, err)
	}
	info, err := p.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("read stream after purge: %w", err)
	}
	if int64(info.State.LastSeq) != seq-1 {
		// Someone published meanwhile (another publisher); start over from the stream.
		return errResync
	}
	p.log.Warn("changes missing from the changelog before they were published: JetStream stream restarted after them; edge clients behind get reset pruned",
		"why", why, "missing_from", p.next, "first_seq", seq)
	p.next = seq
	p.published.Store(seq - 1)
	return nil
}
