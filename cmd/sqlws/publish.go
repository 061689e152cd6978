package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sqlws/sqlws/broker"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/models"
)

// natsConfig is how a node reaches its JetStream stream; serve --publish and edge
// share it.
type natsConfig struct {
	stream string
	creds  string
	token  string
}

func natsFlags(fs *flag.FlagSet, c *natsConfig) {
	fs.StringVar(&c.stream, "nats-stream", broker.DefaultStream, "JetStream stream carrying this database's changes (letters, digits, '_', '-'); its schema bucket is sqlws-STREAM-schema")
	fs.StringVar(&c.creds, "nats-creds", "", "NATS credentials file (JWT and seed)")
	fs.StringVar(&c.token, "nats-token", "", "NATS token (prefer the environment variable: a flag shows in ps)")
}

func (c natsConfig) connect(url, name string, log *slog.Logger) (*nats.Conn, error) {
	return broker.Connect(url, broker.ConnOptions{Name: name, CredsFile: c.creds, Token: c.token, Logger: log})
}

// publishConfig is serve's scale-out flags (docs/scaling.md).
type publishConfig struct {
	url      string
	nats     natsConfig
	maxAge   time.Duration
	maxBytes int64
}

func publishFlags(fs *flag.FlagSet, c *publishConfig) {
	fs.StringVar(&c.url, "publish", "", "publish every change to NATS JetStream at this URL (nats://HOST:4222) for sqlws edge nodes (docs/scaling.md)")
	natsFlags(fs, &c.nats)
	fs.DurationVar(&c.maxAge, "nats-max-age", 0, "with --publish: JetStream keeps changes this long (0: no limit); the longest disconnect an edge client can resume from")
	fs.Int64Var(&c.maxBytes, "nats-max-bytes", 0, "with --publish: JetStream keeps at most this many bytes of changes, dropping the oldest (0: no limit)")
}

// publisher is serve's JetStream publisher: nil without --publish, and every method
// is a no-op on nil, so serve wires it unconditionally.
type publisher struct {
	nc  *nats.Conn
	pub *broker.Publisher
}

// startPublisher connects to NATS and makes sure the stream exists before serve
// announces itself, so edges can start as soon as the source has. NATS being
// unreachable is not fatal (the source serves its own clients and publishes once it
// can); a stream belonging to another database is. start is where the tailer
// starts.
func startPublisher(ctx context.Context, c publishConfig, src fanout.Source, tables func() []models.Table, start int64, log *slog.Logger) (*publisher, error) {
	if c.url == "" {
		return nil, nil
	}
	if err := broker.ValidateStreamName(c.nats.stream); err != nil {
		return nil, fmt.Errorf("--nats-stream: %w", err)
	}
	if c.maxAge < 0 || (c.maxAge > 0 && c.maxAge < time.Second) {
		return nil, fmt.Errorf("--nats-max-age %v: want 0 (no limit) or at least 1s", c.maxAge)
	}
	nc, err := c.nats.connect(c.url, "sqlws source "+src.StreamID(), log)
	if err != nil {
		return nil, err
	}
	pub, err := broker.NewPublisher(nc, src, broker.PublisherOptions{
		Stream: c.nats.stream, MaxAge: c.maxAge, MaxBytes: c.maxBytes, Tables: tables, Logger: log,
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pub.Setup(sctx)
	cancel()
	switch {
	case errors.Is(err, broker.ErrStreamConflict):
		nc.Close()
		return nil, err
	case err != nil:
		log.Warn("JetStream not reachable yet: serving, and publishing once it is", "nats", c.url, "err", err)
	default:
		log.Info("publishing to JetStream", "nats", c.url, "nats_stream", c.nats.stream, "from_seq", pub.Published()+1)
	}
	pub.Tailed(start)
	return &publisher{nc: nc, pub: pub}, nil
}

// sink is the tailer's sink: the hub first (local clients wait for nothing), then
// the publisher's wake-up.
func (p *publisher) sink(hub func([]models.Encoded)) func([]models.Encoded) {
	if p == nil {
		return hub
	}
	return func(batch []models.Encoded) {
		hub(batch)
		if len(batch) > 0 {
			p.pub.Tailed(batch[len(batch)-1].Seq)
		}
	}
}

// dropped is the tailer's Dropped callback: the hub, and the schema bucket.
func (p *publisher) dropped(hub func([]models.Drop)) func([]models.Drop) {
	if p == nil {
		return hub
	}
	return func(drops []models.Drop) {
		hub(drops)
		p.pub.TableDropped(drops)
	}
}

func (p *publisher) run(ctx context.Context) {
	if p != nil {
		p.pub.Run(ctx)
	}
}

func (p *publisher) close() {
	if p != nil {
		p.nc.Close()
	}
}
