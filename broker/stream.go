package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlws/sqlws/models"
)

// DefaultStream is the JetStream stream's name unless --nats-stream says otherwise.
const DefaultStream = "sqlws"

// MetaStreamID is the stream metadata key holding the database's stream id.
const MetaStreamID = "sqlws_stream"

// Message headers.
const (
	// HeaderSchema is the schema bucket's revision a change was published after.
	HeaderSchema = "Sqlws-Schema"
	// HeaderGap marks a tombstone: no change can be served at this seq (see the
	// package comment). Its value says why: "missing" or "too_large".
	HeaderGap = "Sqlws-Gap"
	// HeaderMark marks a seq that holds no change: a row the changelog keeps for its
	// own bookkeeping (changelog marks, capture/native.go). Not a gap: readers pass
	// over it, and no client receives it.
	HeaderMark = "Sqlws-Mark"
)

// Schema bucket keys.
const (
	keyTables = "tables"
	keyDrops  = "drops"
)

// gapToken is the subject token of tombstones for missing seqs. EscapeToken never
// writes it ('%' is always followed by two hex digits, or stands alone).
const gapToken = "%gap"

// markToken is the subject token of marks (HeaderMark), likewise never a table's.
const markToken = "%mark"

// SchemaBucket is the key-value bucket holding the schema of stream's database.
func SchemaBucket(stream string) string { return "sqlws-" + stream + "-schema" }

// ValidateStreamName reports whether name can name both the JetStream stream and,
// inside SchemaBucket, its key-value bucket: 1 to 64 of A-Z, a-z, 0-9, '_' and '-'.
func ValidateStreamName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("stream name %q: want 1 to 64 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if !tokenSafe(name[i]) {
			return fmt.Errorf("stream name %q: only letters, digits, '_' and '-' are allowed", name)
		}
	}
	return nil
}

// tablesDoc is the value of the "tables" key.
type tablesDoc struct {
	Stream string         `json:"stream"`
	Tables []models.Table `json:"tables"`
}

// dropsDoc is the value of the "drops" key: every captured table that stopped
// existing, and the seq its changes end at (models.Drop).
type dropsDoc struct {
	Stream string     `json:"stream"`
	Drops  []dropJSON `json:"drops"`
}

type dropJSON struct {
	Table string `json:"table"`
	Seq   int64  `json:"seq"`
}

func encodeDrops(stream string, drops []models.Drop) []byte {
	doc := dropsDoc{Stream: stream, Drops: make([]dropJSON, 0, len(drops))}
	for _, d := range drops {
		doc.Drops = append(doc.Drops, dropJSON(d))
	}
	b, _ := json.Marshal(doc)
	return b
}

// ConnOptions are how a node connects to NATS.
type ConnOptions struct {
	// Name identifies the connection in NATS's monitoring ("sqlws source", …).
	Name string
	// CredsFile is a NATS credentials file (JWT and seed); Token a token. At most
	// one is used, CredsFile first.
	CredsFile string
	Token     string
	Logger    *slog.Logger
}

// Connect connects to NATS at url. It returns at once even when NATS is down, and
// reconnects forever, so that a node outlives NATS restarts; what it sends while
// disconnected fails at once rather than being buffered, because both sides retry
// from what JetStream holds and a buffered publish could only arrive late.
func Connect(url string, o ConnOptions) (*nats.Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		// A NATS server that vanished without closing the connection is noticed
		// within about 10s, not the default 4 minutes.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() {
				log.Warn("nats: disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats: connected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("nats: asynchronous error", "err", err)
		}),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", url, err)
	}
	return nc, nil
}

// wrongLastSeq reports a publish refused because the stream's last sequence is not
// the one expected: another publisher, or an earlier attempt of this one, stored it.
func wrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// msgSeq reads the seq a change record starts with ({"seq":N,…}); false if it does
// not start that way.
func msgSeq(b []byte) (int64, bool) {
	const pre = `{"seq":`
	if len(b) < len(pre)+1 || string(b[:len(pre)]) != pre {
		return 0, false
	}
	i := len(pre)
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(string(b[len(pre):i]), 10, 64)
	return n, err == nil
}
