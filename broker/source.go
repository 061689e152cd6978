package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/models"
)

// Source is a database's change stream as its JetStream stream holds it: the
// fanout.Source of an edge node. Its StreamID comes from the stream's metadata, its
// Position is JetStream's first and last sequence (the last is the head: an edge whose
// own consumer is behind still knows what JetStream holds, and never calls a since
// the stream holds the future), and its ReadChanges reads by sequence through one
// short-lived consumer per read (reads are pages shared by every subscriber catching
// up, not one per client).
type Source struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	name     string
	id       string
	pre      string
	created  time.Time
	headWait time.Duration
	log      *slog.Logger

	flights flights

	// onChange, if set, hears that the stream is no longer the one opened.
	onChange func(error)

	// known is the highest last sequence the stream is known to have had (from
	// deliveries' pending counts and Position); knownCh is closed and replaced when
	// it grows, for WaitHead.
	knownMu sync.Mutex
	known   int64
	knownCh chan struct{}
}

var _ fanout.Source = (*Source)(nil)
var _ fanout.HeadWaiter = (*Source)(nil)

// ErrNoStream says the JetStream stream does not exist (yet): the source has not
// started, or the stream was removed.
var ErrNoStream = errors.New("no such JetStream stream")

// NotSqlwsError says the stream exists but is not a sqlws change stream.
type NotSqlwsError struct{ Stream string }

func (e *NotSqlwsError) Error() string {
	return fmt.Sprintf("JetStream stream %s is not a sqlws change stream (no %s metadata)", e.Stream, MetaStreamID)
}

// OpenSource opens the change stream held in JetStream stream name. headWait bounds
// how long WaitHead waits for the stream to reach a since beyond its head.
func OpenSource(ctx context.Context, js jetstream.JetStream, name string, headWait time.Duration, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNoStream, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", name, err)
	}
	info := s.CachedInfo()
	id := info.Config.Metadata[MetaStreamID]
	if id == "" {
		return nil, &NotSqlwsError{Stream: name}
	}
	src := &Source{
		js: js, stream: s, name: name, id: id, pre: subjectPrefix(id), created: info.Created,
		headWait: headWait, log: log, knownCh: make(chan struct{}),
	}
	src.flights.src = src
	src.noteLast(int64(info.State.LastSeq))
	return src, nil
}

// StreamID is the database's stream id.
func (s *Source) StreamID() string { return s.id }

// Position reads the stream's first and last sequence from JetStream. Concurrent
// calls share one request, started after each of them began, so none sees a
// position older than its call.
func (s *Source) Position(ctx context.Context) (models.Position, error) {
	info, err := s.flights.info(ctx)
	if err != nil {
		return models.Position{}, err
	}
	if err := s.same(info); err != nil {
		// Another stream's extent must not decide a client's reset.
		return models.Position{}, err
	}
	return s.position(info), nil
}

// same checks that info is the stream opened, and reports it if not.
func (s *Source) same(info *jetstream.StreamInfo) error {
	if info.Created.Equal(s.created) && info.Config.Metadata[MetaStreamID] == s.id {
		return nil
	}
	err := fmt.Errorf("JetStream stream %s was created again (stream %s, created %s)",
		s.name, info.Config.Metadata[MetaStreamID], info.Created.Format(time.RFC3339Nano))
	if s.onChange != nil {
		s.onChange(err)
	}
	return err
}

func (s *Source) position(info *jetstream.StreamInfo) models.Position {
	st := info.State
	p := models.Position{Head: int64(st.LastSeq), Oldest: int64(st.FirstSeq)}
	if st.Msgs == 0 || p.Oldest > p.Head {
		p.Oldest = p.Head + 1
	}
	s.noteLast(p.Head)
	return p
}

// identity checks that the stream is still the one opened: not deleted, not
// created again (a new stream starts a new sequence), same database.
func (s *Source) identity(ctx context.Context) error {
	info, err := s.stream.Info(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: %s was removed", ErrNoStream, s.name)
	}
	if err != nil {
		return nil // unreachable now; not evidence of a change
	}
	if err := s.same(info); err != nil {
		return err
	}
	s.position(info)
	return nil
}

// ReadChanges returns up to limit changes with seq > after, consecutive, and no more
// than maxBytes of them (but at least one). At a sequence JetStream no longer holds
// (expired, purged) or holds as a tombstone it returns what came before and
// models.ErrGap; past the last sequence it returns nothing.
func (s *Source) ReadChanges(ctx context.Context, after int64, limit, maxBytes int) ([]models.Encoded, error) {
	if limit <= 0 {
		limit = 1000
	}
	cons, err := s.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       uint64(after + 1),
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute, // in case the delete below is lost
		Description:       "sqlws edge history read",
	})
	if err != nil {
		return nil, fmt.Errorf("read stream %s after %d: %w", s.name, after, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s.stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	pending := int(min(cons.CachedInfo().NumPending, uint64(limit)))
	if pending == 0 {
		return nil, nil
	}
	var opts []jetstream.FetchOpt
	if maxBytes > 0 {
		opts = append(opts, jetstream.FetchMaxBytes(maxBytes))
	}
	out, err := s.fetch(ctx, cons, pending, after, opts)
	if err == nil && len(out) == 0 && maxBytes > 0 {
		// The first change alone is larger than maxBytes, which JetStream answers
		// with nothing; one change always goes out.
		out, err = s.fetch(ctx, cons, 1, after, nil)
	}
	if err == nil && len(out) == 0 {
		// JetStream said it held changes after after, yet sent none in time. Not
		// "nothing there" (the caller would take that for a hole): an error, retried.
		return nil, fmt.Errorf("read stream %s after %d: no changes arrived in time", s.name, after)
	}
	return out, err
}

func (s *Source) fetch(ctx context.Context, cons jetstream.Consumer, n int, after int64, opts []jetstream.FetchOpt) ([]models.Encoded, error) {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	batch, err := cons.Fetch(n, append(opts, jetstream.FetchContext(fctx))...)
	if err != nil {
		return nil, fmt.Errorf("read stream %s after %d: %w", s.name, after, err)
	}
	out := make([]models.Encoded, 0, n)
	var gapErr error
	for m := range batch.Messages() {
		if gapErr != nil {
			continue // drain
		}
		meta, err := m.Metadata()
		if err != nil {
			gapErr = fmt.Errorf("read stream %s: %w", s.name, err)
			continue
		}
		seq := int64(meta.Sequence.Stream)
		if seq != after+1 {
			gapErr = models.ErrGap
			continue
		}
		e, ok := s.decode(seq, m.Subject(), m.Headers(), m.Data())
		if !ok {
			gapErr = models.ErrGap
			continue
		}
		out = append(out, e)
		after = seq
	}
	if gapErr != nil {
		return out, gapErr
	}
	if err := batch.Error(); err != nil && len(out) == 0 {
		return nil, fmt.Errorf("read stream %s after %d: %w", s.name, after, err)
	}
	return out, nil // consecutive; a read cut short goes on from its last
}

// decode turns a stream message into a change (a mark into an entry without JSON,
// which readers pass over); false for a tombstone, or for a message that is not a
// change record of this seq (never delivered in its place).
func (s *Source) decode(seq int64, subject string, hdr nats.Header, data []byte) (models.Encoded, bool) {
	if hdr.Get(HeaderGap) != "" {
		return models.Encoded{}, false
	}
	if hdr.Get(HeaderMark) != "" && subject == s.pre+markToken {
		return models.Encoded{Seq: seq}, true
	}
	table, err := tableOf(s.pre, subject)
	if err != nil {
		s.log.Error("JetStream message on a subject sqlws does not publish: treated as a gap", "seq", seq, "subject", subject)
		return models.Encoded{}, false
	}
	if n, ok := msgSeq(data); !ok || n != seq {
		s.log.Error("JetStream message is not the change record of its sequence: treated as a gap", "seq", seq, "record_seq", n)
		return models.Encoded{}, false
	}
	return models.Encoded{Seq: seq, Table: table, JSON: data}, true
}

// noteLast records that the stream's last sequence is at least last.
func (s *Source) noteLast(last int64) {
	s.knownMu.Lock()
	if last > s.known {
		s.known = last
		close(s.knownCh)
		s.knownCh = make(chan struct{})
	}
	s.knownMu.Unlock()
}

// WaitHead waits up to the source's head wait for the stream to reach seq (see
// fanout.HeadWaiter), woken by what this edge hears of the stream, and returns the
// position then.
func (s *Source) WaitHead(ctx context.Context, seq int64) (models.Position, error) {
	wait, cancel := context.WithTimeout(ctx, s.headWait)
	defer cancel()
	for {
		s.knownMu.Lock()
		known, ch := s.known, s.knownCh
		s.knownMu.Unlock()
		if known >= seq {
			break
		}
		select {
		case <-ch:
			continue
		case <-wait.Done():
		}
		break
	}
	if err := ctx.Err(); err != nil {
		return models.Position{}, err // the client left
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	return s.Position(pctx)
}

// flights coalesces stream info requests: a caller joins the request that starts
// next (never one already under way, which may predate its call), so one request
// at a time serves any number of concurrent callers.
type flights struct {
	src     *Source
	mu      sync.Mutex
	running *flight
	waiting *flight
}

type flight struct {
	done chan struct{}
	info *jetstream.StreamInfo
	err  error
}

func (f *flights) info(ctx context.Context) (*jetstream.StreamInfo, error) {
	f.mu.Lock()
	if f.waiting == nil {
		f.waiting = &flight{done: make(chan struct{})}
	}
	fl := f.waiting
	if f.running == nil {
		f.startLocked()
	}
	f.mu.Unlock()
	select {
	case <-fl.done:
		return fl.info, fl.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startLocked runs the waiting flight. Its goroutine lives for one request, bounded
// by a timeout, and starts the next waiting flight when done.
func (f *flights) startLocked() {
	fl := f.waiting
	f.waiting, f.running = nil, fl
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fl.info, fl.err = f.src.stream.Info(ctx)
		cancel()
		if fl.err != nil {
			fl.err = fmt.Errorf("read stream %s: %w", f.src.name, fl.err)
		}
		f.mu.Lock()
		f.running = nil
		if f.waiting != nil {
			f.startLocked()
		}
		f.mu.Unlock()
		close(fl.done)
	}()
}
