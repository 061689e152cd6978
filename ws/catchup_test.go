package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/ws"
)

// catchUp connects a subscriber with since and reads until it has every change up
// to last, checking each seq follows the one before. It returns the number of frames.
func catchUp(t *testing.T, url string, since, last int64) (frames int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return 0, err
	}
	defer c.CloseNow()
	c.SetReadLimit(64 << 20)
	if _, _, err := c.Read(ctx); err != nil { // hello
		return 0, err
	}
	if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"subscribe","id":1,"since":%d}`, since)); err != nil {
		return 0, err
	}
	pos := since
	for pos < last {
		_, b, err := c.Read(ctx)
		if err != nil {
			return frames, fmt.Errorf("at seq %d: %w", pos, err)
		}
		var f struct {
			Type    string
			Changes []struct{ Seq int64 }
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return frames, err
		}
		if f.Type != "changes" {
			if f.Type == "subscribed" {
				continue
			}
			return frames, fmt.Errorf("at seq %d: %s", pos, b)
		}
		frames++
		for _, ch := range f.Changes {
			if ch.Seq != pos+1 {
				return frames, fmt.Errorf("seq %d after %d", ch.Seq, pos)
			}
			pos = ch.Seq
		}
	}
	return frames, nil
}

// TestSharedCatchUp: 200 subscribers behind the window at the same position read
// each changelog page from SQLite about once between them, not once each, and every
// one receives everything in order.
func TestSharedCatchUp(t *testing.T) {
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{}, fanout.Options{WindowChanges: 500})
	const changes = 3000
	insertRows(t, s.path, 1, changes, 50)
	testenv.WaitFor(t, testenv.Timeout, "the tailer to read every change", func() bool { return s.hub.Stats().Window.Head == changes })
	url := "ws" + strings.TrimPrefix(s.http.URL, "http")

	const subs = 200
	var wg sync.WaitGroup
	var frames atomic.Int64
	for range subs {
		wg.Go(func() {
			n, err := catchUp(t, url, 0, changes)
			if err != nil {
				t.Error(err)
			}
			frames.Add(int64(n))
		})
	}
	wg.Wait()
	st := s.hub.Stats().Pages
	pages := int64(changes+511) / 512
	t.Logf("%d subscribers caught up on %d changes in %d frames; %d page reads, %d cache hits", subs, changes, frames.Load(), st.Reads, st.Hits)
	if st.Reads > uint64(2*pages) {
		t.Errorf("%d page reads for %d pages of history: catching up is not shared", st.Reads, pages)
	}
	if st.Hits < uint64(subs) {
		t.Errorf("only %d page cache hits for %d subscribers", st.Hits, subs)
	}
}

// TestCatchUpWithinBudget: subscribers far apart in a backlog many times the memory
// budget each read their own pages; the pages in memory never exceed the budget
// (delivery waits for memory instead), and nothing is lost.
func TestCatchUpWithinBudget(t *testing.T) {
	const budget = 1 << 20
	s := start(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", ws.Options{},
		fanout.Options{WindowChanges: 100, MemoryBudget: budget})
	const changes = 8000 // ~1 KB each: about 8 times the budget
	for i := 0; i < changes; i += 2000 {
		insertRows(t, s.path, i+1, 2000, 1000)
	}
	testenv.WaitFor(t, testenv.Timeout, "the tailer to read every change", func() bool { return s.hub.Stats().Window.Head == changes })
	url := "ws" + strings.TrimPrefix(s.http.URL, "http")

	stop := make(chan struct{})
	var peak atomic.Int64
	var watcher sync.WaitGroup
	watcher.Go(func() {
		for {
			st := s.hub.Stats()
			peak.Store(max(peak.Load(), st.Pages.Bytes+int64(st.Window.Bytes)))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			since := int64(i * changes / 16)
			if _, err := catchUp(t, url, since, changes); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(stop)
	watcher.Wait()
	t.Logf("peak memory of window and pages: %d bytes (budget %d); %d page reads", peak.Load(), budget, s.hub.Stats().Pages.Reads)
	if peak.Load() > budget {
		t.Errorf("window and pages reached %d bytes, over the %d-byte budget", peak.Load(), budget)
	}
}
