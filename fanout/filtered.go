package fanout

import (
	"sort"
	"sync/atomic"

	"github.com/sqlws/sqlws/filter"
	"github.com/sqlws/sqlws/models"
)

// A filtered subscription's cursor belongs to a group: every subscription with the
// same filter (filter.Filter.Key) shares it. Publish evaluates each new change once
// per group — and, for groups whose filter requires an equality, only for the groups
// whose value the change carries, found through an index — and appends what the
// group's subscribers receive to the group's entries. A cursor reads those entries
// without evaluating anything. A cursor behind what its group holds (it started with
// since, or fell behind) evaluates the changes it reads itself, from the window or
// the changelog, by the same rules.

// group is the subscriptions sharing one filter. Its fields are guarded by the
// window's mu.
type group struct {
	f    *filter.Filter
	refs int
	// cursors are the group's cursors; when a publish gives the group something
	// (a record, staleness, a restart) each one's wake is called, so a subscriber the
	// change does not concern is not visited at all.
	cursors map[*Cursor]struct{}
	touched bool // in the window's touched list this publish
	// from: entries hold every record the group's subscribers receive for each seq in
	// (from, window head].
	from    int64
	entries []groupEntry
	bytes   int // of records built for this group (not shared with the window)
	// stale is the seq of the first change whose row lacks a column the filter uses
	// (0: none); the group evaluates nothing after it.
	stale int64
	// quiet is the highest seq at or below which the group holds nothing a cursor at
	// that seq has not seen: max(from, last entry's seq, stale). A cursor at or past
	// it has nothing to read and need not take the window's lock — with 10,000
	// filtered subscribers, each publish would otherwise take it 10,000 times.
	// Written under the window's lock; read without it.
	quiet atomic.Int64
}

// touchLocked refreshes g.quiet and marks g as having news for its cursors (see
// Window.wakeTouched). w.mu is held.
func (g *group) touchLocked() {
	q := max(g.from, g.stale)
	if n := len(g.entries); n > 0 {
		q = max(q, g.entries[n-1].Seq)
	}
	g.quiet.Store(q)
}

// noteLocked records that g has news for its cursors this publish. w.mu is held.
func (w *Window) noteLocked(g *group) {
	if !g.touched {
		g.touched = true
		w.filters.touched = append(w.filters.touched, g)
	}
}

// wakesLocked collects the wake functions of the touched groups' cursors and clears
// the touched list. w.mu is held; the caller calls them after unlocking.
func (w *Window) wakesLocked(dst []func()) []func() {
	for _, g := range w.filters.touched {
		g.touched = false
		for c := range g.cursors {
			if c.wake != nil {
				dst = append(dst, c.wake)
			}
		}
	}
	clear(w.filters.touched)
	w.filters.touched = w.filters.touched[:0]
	return dst
}

// tableGroups are the groups over one table.
type tableGroups struct {
	scan []*group                       // evaluated on every change of the table
	eq   map[string]map[string][]*group // column → index key → groups
}

// filters is the window's registry of groups.
type filters struct {
	byKey   map[string]*group
	byTable map[string]*tableGroups
	bytes   int      // sum of groups' bytes
	touched []*group // groups with news this publish
}

// NewFilteredCursor is NewCursor for a subscription of f's table narrowed by f. The
// cursor must be closed (CloseCursor) when the subscription ends. wake (may be nil)
// is called, after Publish, whenever a publish gave the cursor's group something to
// read: the cue to read the cursor again. Publish does not otherwise say which
// filtered cursors have news; unfiltered ones must be read after every Publish.
func (w *Window) NewFilteredCursor(f *filter.Filter, since int64, wake func()) *Cursor {
	c := w.NewCursor([]string{f.Table()}, since)
	c.filter = f
	c.wake = wake
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.filters.byKey == nil {
		w.filters.byKey = map[string]*group{}
		w.filters.byTable = map[string]*tableGroups{}
	}
	g := w.filters.byKey[f.Key()]
	if g != nil && g.stale != 0 {
		// A stale group ends its subscribers at the change it could not read; a
		// subscription starting now (the column may be back) gets a group of its
		// own, which replaces the stale one for later subscriptions too.
		g = nil
	}
	if g == nil {
		g = &group{f: f, from: w.head, cursors: map[*Cursor]struct{}{}}
		g.touchLocked()
		w.filters.byKey[f.Key()] = g
		tg := w.filters.byTable[f.Table()]
		if tg == nil {
			tg = &tableGroups{eq: map[string]map[string][]*group{}}
			w.filters.byTable[f.Table()] = tg
		}
		if col, key, ok := f.EqIndex(); ok {
			if tg.eq[col] == nil {
				tg.eq[col] = map[string][]*group{}
			}
			tg.eq[col][key] = append(tg.eq[col][key], g)
		} else {
			tg.scan = append(tg.scan, g)
		}
	}
	g.refs++
	g.cursors[c] = struct{}{}
	c.group = g
	return c
}

// CloseCursor releases what c holds in the window; c must not be used afterwards.
// Unfiltered cursors hold nothing, so closing them is optional.
func (w *Window) CloseCursor(c *Cursor) {
	g := c.group
	if g == nil {
		return
	}
	c.group = nil
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(g.cursors, c)
	if g.refs--; g.refs > 0 {
		return
	}
	f := g.f
	if w.filters.byKey[f.Key()] == g { // not replaced by a newer group of the same key
		delete(w.filters.byKey, f.Key())
	}
	w.filters.bytes -= g.bytes
	tg := w.filters.byTable[f.Table()]
	if col, key, ok := f.EqIndex(); ok {
		tg.eq[col][key] = without(tg.eq[col][key], g)
		if len(tg.eq[col][key]) == 0 {
			delete(tg.eq[col], key)
		}
		if len(tg.eq[col]) == 0 {
			delete(tg.eq, col)
		}
	} else {
		tg.scan = without(tg.scan, g)
	}
	if len(tg.scan) == 0 && len(tg.eq) == 0 {
		delete(w.filters.byTable, f.Table())
	}
}

func without(gs []*group, g *group) []*group {
	for i, o := range gs {
		if o == g {
			gs[i] = gs[len(gs)-1]
			gs[len(gs)-1] = nil
			return gs[:len(gs)-1]
		}
	}
	return gs
}

// filterLocked evaluates e, just pushed, for the groups over its table. w.mu is held.
func (w *Window) filterLocked(e models.Encoded) {
	tg := w.filters.byTable[e.Table]
	if tg == nil || e.JSON == nil {
		return
	}
	ch := filter.NewChange(e)
	apply := func(g *group) {
		if g.stale != 0 {
			return
		}
		rec, res := g.f.Apply(ch)
		switch res {
		case filter.Deliver:
			w.appendLocked(g, models.Encoded{Seq: e.Seq, Table: e.Table, JSON: rec}, !sameBytes(rec, e.JSON))
		case filter.Stale:
			g.stale = e.Seq
			g.touchLocked()
			w.noteLocked(g)
		}
	}
	for _, g := range tg.scan {
		apply(g)
	}
	if len(tg.eq) == 0 {
		return
	}
	// The index has each group under the key its rows carry; a change reaches the
	// groups of its old and its new row's keys (one key when both are equal).
	for _, byKey := range tg.eq {
		var f *filter.Filter
		for _, gs := range byKey {
			f = gs[0].f
			break
		}
		keys, missing := f.IndexKeys(ch)
		if missing {
			// The column is gone from the change's row: every group on it sees the
			// change (and goes stale, or reads it as NULL if it predates the column).
			for _, gs := range byKey {
				for _, g := range gs {
					apply(g)
				}
			}
			continue
		}
		for _, k := range keys {
			for _, g := range byKey[k] {
				apply(g)
			}
		}
	}
}

// appendLocked appends a record to g, trimming what has left the window, and — when
// the records built for groups (narrowed by select, or moved) outgrow a sixteenth of
// the memory budget, taken from the quarter for frames in flight — g's oldest half:
// a cursor behind what its group holds evaluates for itself, so trimming costs time,
// never a change. built says the record is g's own bytes, not the window's.
func (w *Window) appendLocked(g *group, e models.Encoded, built bool) {
	n := 0
	over := int64(w.filters.bytes) > w.opts.MemoryBudget/16
	for n < len(g.entries) && (g.entries[n].Seq < w.first || (over && n <= len(g.entries)/2)) {
		if g.entries[n].built {
			g.bytes -= len(g.entries[n].JSON)
			w.filters.bytes -= len(g.entries[n].JSON)
		}
		n++
	}
	if n > 0 {
		g.from = max(g.from, g.entries[n-1].Seq)
		clear(g.entries[:n])
		g.entries = append(g.entries[:0], g.entries[n:]...)
	}
	g.from = max(g.from, w.first-1)
	if built {
		g.bytes += len(e.JSON)
		w.filters.bytes += len(e.JSON)
	}
	g.entries = append(g.entries, groupEntry{Encoded: e, built: built})
	g.touchLocked()
	w.noteLocked(g)
}

// groupEntry is a record a group's subscribers receive.
type groupEntry struct {
	models.Encoded
	built bool // JSON was built for the group (counted in its bytes), not the window's
}

// resetFiltersLocked empties every group: the window restarted at seq first.
func (w *Window) resetFiltersLocked(first int64) {
	for _, g := range w.filters.byKey {
		clear(g.entries)
		g.entries = g.entries[:0]
		w.filters.bytes -= g.bytes
		g.bytes = 0
		g.from = max(g.from, first-1)
		g.touchLocked()
		w.noteLocked(g)
	}
}

// nextFiltered is Next for a filtered cursor, below limit (its drop limit). w.mu is
// read-held.
func (w *Window) nextFilteredLocked(c *Cursor, dst []models.Encoded, limit int64, maxBytes int) (out []models.Encoded, pos int64, st Status) {
	g := c.group
	pos = c.pos
	if pos >= w.head || pos >= limit {
		return dst, pos, Ready
	}
	if pos+1 < w.first {
		return dst, pos, Behind
	}
	if maxBytes <= 0 || maxBytes > w.opts.FrameBytes {
		maxBytes = w.opts.FrameBytes
	}
	if pos < g.from {
		// Before what the group holds: evaluate the window's changes here.
		end := min(g.from, limit)
		bytes := 0
		for i := int(pos + 1 - w.first); i < w.n; i++ {
			e := w.ring[(w.start+i)%len(w.ring)]
			if e.Seq > end {
				break
			}
			if e.JSON != nil && e.Table == g.f.Table() {
				rec, res := g.f.Apply(filter.NewChange(e))
				if res == filter.Stale {
					if len(dst) == 0 {
						return dst, pos, Invalid
					}
					return dst, pos, Ready
				}
				if res == filter.Deliver {
					if len(dst) >= w.opts.FrameChanges || (len(dst) > 0 && bytes+len(rec) > maxBytes) {
						return dst, pos, Ready
					}
					dst = append(dst, models.Encoded{Seq: e.Seq, Table: e.Table, JSON: rec})
					bytes += len(rec)
				}
			}
			pos = e.Seq
		}
		return dst, pos, Ready
	}
	// From the group's entries: the first after pos.
	i := sort.Search(len(g.entries), func(i int) bool { return g.entries[i].Seq > pos })
	bytes := 0
	for ; i < len(g.entries); i++ {
		e := g.entries[i].Encoded
		if e.Seq > limit {
			break
		}
		if len(dst) >= w.opts.FrameChanges || (len(dst) > 0 && bytes+len(e.JSON) > maxBytes) {
			return dst, pos, Ready
		}
		dst = append(dst, e)
		bytes += len(e.JSON)
		pos = e.Seq
	}
	// Every change up to the head (or the limit, or the stale change) is evaluated.
	end := min(w.head, limit)
	if g.stale != 0 {
		if pos >= g.stale-1 && len(dst) == 0 {
			return dst, pos, Invalid
		}
		end = min(end, g.stale-1)
	}
	return dst, max(pos, end), Ready
}

// historyFilter applies c's filter to a change History read: the record to deliver,
// whether to deliver it, and whether the filter went stale there.
func historyFilter(c *Cursor, e models.Encoded) (models.Encoded, bool, bool) {
	if c.filter == nil {
		return e, true, false
	}
	rec, res := c.filter.Apply(filter.NewChange(e))
	switch res {
	case filter.Deliver:
		return models.Encoded{Seq: e.Seq, Table: e.Table, JSON: rec}, true, false
	case filter.Stale:
		return e, false, true
	}
	return e, false, false
}

// sameBytes reports whether a and b are the same memory (the filter passed the
// window's record through).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
