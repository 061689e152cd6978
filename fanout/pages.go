package fanout

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/sqlws/sqlws/models"
)

// pageChanges is how many changes a page holds. Pages start at fixed seqs (1, 1+n,
// 1+2n, …) so that subscribers at nearby positions ask for the same pages. Large
// enough to make frames of many changes for a subscriber that is behind; small
// enough that a page does not hold much more than anyone needs.
const pageChanges = 512

// minPageBytes is the room a page load waits for in the budget, and maxPageBytes
// the most it takes: a load is bounded by what the budget has left within these.
const (
	minPageBytes = 256 << 10
	maxPageBytes = 4 << 20
)

// page is a run of consecutive changes read from the Source, shared by every cursor
// that needs them. Immutable once loaded.
type page struct {
	start, end int64            // the seqs it covers: start..end
	cached     bool             // in pages.byStart (kept after use)
	entries    []models.Encoded // every change from start to end, in order
	gapAfter   bool             // the changelog has a hole after end
	pruned     bool             // the changelog has a hole right at start
	bytes      int64

	ready chan struct{} // closed once loaded (or failed)
	err   error

	pins       int   // cursors using its entries (under pages.mu)
	prev, next *page // LRU list of unpinned loaded pages (under pages.mu)
}

// pages is a read-through cache of changelog pages, so that catching up costs a read
// and an encoding per page, not per subscriber and page. Concurrent requests for a
// page wait for one read. Its memory is bounded: unpinned pages are evicted least
// recently used first, and when pinned pages fill the budget a load waits until one
// is released, which slows delivery but never grows memory past the budget.
type pages struct {
	src      Source
	maxBytes int64

	mu       sync.Mutex
	byStart  map[int64]*page
	lru      page          // sentinel of the unpinned list; lru.next is the least recently used
	bytes    int64         // held by loaded pages
	reserved int64         // set aside for loads under way
	freed    chan struct{} // closed and replaced when memory is released

	reads, hits atomic.Uint64
}

func newPages(src Source, maxBytes int64) *pages {
	p := &pages{src: src, maxBytes: maxBytes, byStart: map[int64]*page{}, freed: make(chan struct{})}
	p.lru.prev, p.lru.next = &p.lru, &p.lru
	return p
}

// errPagePruned says the changes at a seq are no longer in the changelog.
var errPagePruned = errors.New("changes pruned")

// get returns the page holding seq, pinned: the caller must release it. It reads the
// page from the Source unless it is cached or being read. errPagePruned if the
// changelog has a hole at seq; a nil page (and no error) if there is nothing at seq
// yet (seq is beyond the head).
func (ps *pages) get(ctx context.Context, seq int64) (*page, error) {
	start := (seq-1)/pageChanges*pageChanges + 1
	for {
		p, err := ps.page(ctx, start)
		if err != nil {
			return nil, err
		}
		switch {
		case p.pruned:
			// A hole right at the page's start: retention pruned up to some seq in it.
			// From seq itself the changes may be there, in a page of their own.
			ps.release(p)
			if seq == start {
				return nil, errPagePruned
			}
			start = seq
			continue
		case len(p.entries) == 0:
			ps.release(p)
			return nil, nil // nothing there yet
		case seq <= p.end:
			return p, nil
		case p.gapAfter:
			ps.release(p)
			return nil, errPagePruned
		}
		// seq is past a page cut short (by the budget, or at the head when it was
		// read): the rest is a page of its own, starting after it.
		start = p.end + 1
		ps.release(p)
	}
}

// page returns the page starting at start, pinned, once it is loaded: from the
// cache, by waiting for a read under way, or by reading it.
func (ps *pages) page(ctx context.Context, start int64) (*page, error) {
	ps.mu.Lock()
	p, ok := ps.byStart[start]
	if !ok {
		p = &page{start: start, ready: make(chan struct{}), cached: true}
		ps.byStart[start] = p
		p.pins++
		ps.mu.Unlock()
		ps.load(ctx, p)
	} else {
		ps.pinLocked(p)
		ps.mu.Unlock()
		ps.hits.Add(1)
		select {
		case <-p.ready:
		case <-ctx.Done():
			ps.release(p)
			return nil, ctx.Err()
		}
	}
	if p.err != nil {
		err := p.err
		ps.release(p)
		return nil, err
	}
	return p, nil
}

// load reads p (pinned by the caller) from the Source, waiting for room in the
// budget first, and marks it ready.
func (ps *pages) load(ctx context.Context, p *page) {
	defer close(p.ready)
	start := p.start
	room, err := ps.reserve(ctx)
	if err == nil {
		ps.reads.Add(1)
		var got []models.Encoded
		// Each entry costs entryOverhead beside its JSON, which is what the Source
		// counts.
		got, err = ps.read(ctx, start-1, int(max(room-pageChanges*entryOverhead, 1)))
		if errors.Is(err, models.ErrGap) {
			p.gapAfter, err = true, nil
			p.pruned = len(got) == 0
		}
		if err == nil {
			p.entries = got
			if len(got) > 0 {
				p.end = got[len(got)-1].Seq
			}
			for _, e := range got {
				p.bytes += int64(len(e.JSON)) + entryOverhead
			}
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.reserved -= room
	p.err = err
	if full := len(p.entries) == pageChanges || p.gapAfter; err != nil || !full {
		// Not kept: failed (retried by the next get), or cut short (at the head,
		// which moves, or by the budget): it serves this read only.
		delete(ps.byStart, start)
		p.cached = false
	}
	ps.bytes += p.bytes
}

// read runs one Source read on a goroutine of its own. The caller is a subscriber's
// writer, which lives as long as the subscriber is behind; a database read (SQLite
// is deep) would grow its stack for good, and a thousand subscribers catching up
// would hold tens of megabytes of stacks that the memory budget cannot see.
func (ps *pages) read(ctx context.Context, after int64, maxBytes int) ([]models.Encoded, error) {
	type result struct {
		got []models.Encoded
		err error
	}
	ch := make(chan result, 1)
	go func() {
		got, err := ps.src.ReadChanges(ctx, after, pageChanges, maxBytes)
		ch <- result{got, err}
	}()
	r := <-ch
	return r.got, r.err
}

// entryOverhead is what an entry costs beside its JSON: the Encoded header and the
// table name (shared) in the page's slice.
const entryOverhead = 48

// reserve waits until the budget has room for a page (evicting unpinned pages),
// sets that room aside for the load and returns how many bytes it may take: a page's
// worth at most, so that concurrent loads share what is left.
func (ps *pages) reserve(ctx context.Context) (int64, error) {
	for {
		ps.mu.Lock()
		for ps.bytes+ps.reserved+minPageBytes > ps.maxBytes && ps.lru.next != &ps.lru {
			ps.evictLocked(ps.lru.next)
		}
		room := min(ps.maxBytes-ps.bytes-ps.reserved, maxPageBytes)
		if room >= minPageBytes || ps.bytes+ps.reserved == 0 {
			room = max(room, minPageBytes)
			ps.reserved += room
			ps.mu.Unlock()
			return room, nil
		}
		freed := ps.freed
		ps.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// release unpins p; an unpinned page stays cached (if kept) until evicted.
func (ps *pages) release(p *page) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p.pins--
	if p.pins > 0 {
		return
	}
	if !p.cached {
		// Not cached: its memory goes as soon as nobody uses it.
		ps.bytes -= p.bytes
		p.bytes = 0
		ps.signalLocked()
		return
	}
	// Most recently used: at the back. Evictable now, which a load waiting for
	// room must hear of.
	p.prev, p.next = ps.lru.prev, &ps.lru
	ps.lru.prev.next = p
	ps.lru.prev = p
	if ps.bytes > ps.maxBytes {
		ps.evictLocked(ps.lru.next)
	}
	ps.signalLocked()
}

func (ps *pages) pinLocked(p *page) {
	if p.pins == 0 && p.next != nil {
		p.prev.next, p.next.prev = p.next, p.prev
		p.prev, p.next = nil, nil
	}
	p.pins++
}

// evictLocked drops unpinned page p from the cache.
func (ps *pages) evictLocked(p *page) {
	p.prev.next, p.next.prev = p.next, p.prev
	p.prev, p.next = nil, nil
	delete(ps.byStart, p.start)
	p.cached = false
	ps.bytes -= p.bytes
	p.bytes = 0
	ps.signalLocked()
}

func (ps *pages) signalLocked() {
	close(ps.freed)
	ps.freed = make(chan struct{})
}

// PageStats are the catch-up cache's figures.
type PageStats struct {
	Reads uint64 // pages read from the Source
	Hits  uint64 // requests served by a page cached or being read
	Bytes int64  // memory held by pages
	Max   int64  // the pages' share of the memory budget
}

func (ps *pages) stats() PageStats {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return PageStats{Reads: ps.reads.Load(), Hits: ps.hits.Load(), Bytes: ps.bytes, Max: ps.maxBytes}
}
