package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/models"
)

// schema is an edge's copy of the source's schema bucket: the tracked tables (it is
// the hub's ws.Tables) and the table drops, which it hands to the hub as it learns
// them. Safe for concurrent use.
type schema struct {
	streamID string
	dropped  func([]models.Drop)

	tables atomic.Pointer[map[string]*capture.Table] // nil until the tables are known

	mu       sync.Mutex
	revs     map[string]uint64 // the revision applied, per key
	applied  atomic.Uint64     // the highest revision applied
	seen     map[models.Drop]bool
	tableDoc []models.Table
}

func newSchema(streamID string, dropped func([]models.Drop)) *schema {
	return &schema{streamID: streamID, dropped: dropped, revs: map[string]uint64{}, seen: map[models.Drop]bool{}}
}

// Tracked reports whether the source tracks table.
func (s *schema) Tracked(table string) bool {
	m := s.tables.Load()
	return m != nil && (*m)[table] != nil
}

// Table is the source's schema of a tracked table, as last published: what a
// filtered subscription on the edge compiles against, as it would on the source.
func (s *schema) Table(name string) (*capture.Table, bool) {
	m := s.tables.Load()
	if m == nil || (*m)[name] == nil {
		return nil, false
	}
	return (*m)[name], true
}

// Known reports whether the tables have been read.
func (s *schema) Known() bool { return s.tables.Load() != nil }

// Tables is the source's tracked tables, as last published.
func (s *schema) Tables() []models.Table {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]models.Table(nil), s.tableDoc...)
}

// apply applies one bucket entry, unless it is older than what was applied.
func (s *schema) apply(e jetstream.KeyValueEntry) error {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Revision() <= s.revs[e.Key()] {
		return nil
	}
	switch e.Key() {
	case keyTables:
		var doc tablesDoc
		if err := json.Unmarshal(e.Value(), &doc); err != nil {
			return fmt.Errorf("schema bucket key %s: %w", keyTables, err)
		}
		if doc.Stream != s.streamID {
			return fmt.Errorf("schema bucket holds stream %s's tables, not %s's", doc.Stream, s.streamID)
		}
		m := make(map[string]*capture.Table, len(doc.Tables))
		for _, t := range doc.Tables {
			m[t.Name] = &capture.Table{Table: t}
		}
		s.tables.Store(&m)
		s.tableDoc = doc.Tables
	case keyDrops:
		var doc dropsDoc
		if err := json.Unmarshal(e.Value(), &doc); err != nil {
			return fmt.Errorf("schema bucket key %s: %w", keyDrops, err)
		}
		if doc.Stream != s.streamID {
			return fmt.Errorf("schema bucket holds stream %s's drops, not %s's", doc.Stream, s.streamID)
		}
		var fresh []models.Drop
		for _, d := range doc.Drops {
			if md := models.Drop(d); !s.seen[md] {
				s.seen[md] = true
				fresh = append(fresh, md)
			}
		}
		if len(fresh) > 0 {
			// Drops only add up: one a later value lacks (a new stream's) still ended
			// the subscriptions it ended.
			s.dropped(fresh)
		}
	default:
		return nil
	}
	s.revs[e.Key()] = e.Revision()
	if e.Revision() > s.applied.Load() {
		s.applied.Store(e.Revision())
	}
	return nil
}

// load reads both keys now, for a change stamped with a revision not applied yet
// (the watch has not delivered it), and at start.
func (s *schema) load(ctx context.Context, kv jetstream.KeyValue) error {
	for _, key := range []string{keyTables, keyDrops} {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read schema bucket key %s: %w", key, err)
		}
		if err := s.apply(e); err != nil {
			return err
		}
	}
	return nil
}
