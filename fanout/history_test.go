package fanout_test

import (
	"context"
	"testing"

	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
)

// TestHistoryAcrossPages reads a real changelog through the shared pages: a cursor
// catches up page after page with nothing skipped; one whose changes were pruned is
// told so; and one at the retention boundary — in the middle of a page whose start
// was pruned — is served, not reset.
func TestHistoryAcrossPages(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`)
	ctx := context.Background()
	d := testdb.Install(t, path, testdb.Options{})
	testenv.SQLite(t, path, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO t(id, v) SELECT i, 'x' FROM n;")
	w := fanout.NewWindow(d.Log, 2000, fanout.Options{}) // empty window: everything is history

	readAll := func(since int64) (int64, fanout.Status) {
		c := w.NewCursor(nil, since)
		for {
			got, pos, st, lease, err := w.History(ctx, c, nil)
			lease.Release()
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range got {
				if e.Seq != c.Pos()+int64(i)+1 {
					t.Fatalf("since %d: seq %d at %d after %d", since, e.Seq, i, c.Pos())
				}
			}
			c.Advance(pos)
			if st != fanout.Ready || len(got) == 0 {
				return c.Pos(), st
			}
		}
	}
	if pos, st := readAll(0); pos != 2000 || st != fanout.Ready {
		t.Fatalf("from 0: reached %d with %v, want 2000 Ready", pos, st)
	}
	if _, err := d.Log.Prune(ctx, changelog.Retention{MaxCount: 1300}, 2000); err != nil {
		t.Fatal(err)
	}
	// Pages cached before the prune still hold the changes; a fresh window reads the
	// changelog as it is now.
	w = fanout.NewWindow(d.Log, 2000, fanout.Options{})
	if pos, st := readAll(600); st != fanout.Pruned || pos != 600 {
		t.Fatalf("from 600 (pruned up to 700): reached %d with %v, want Pruned at once", pos, st)
	}
	if pos, st := readAll(700); pos != 2000 || st != fanout.Ready {
		t.Fatalf("from 700 (the oldest retained is 701, inside a page): reached %d with %v, want 2000 Ready", pos, st)
	}
	if st := w.PageStats(); st.Reads == 0 || st.Bytes > st.Max {
		t.Fatalf("page stats %+v", st)
	}
}
