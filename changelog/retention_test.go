package changelog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
)

func TestPruneByCountAndAge(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	d := open(t, path, testdb.Options{})
	ctx := context.Background()
	testenv.SQLite(t, path, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1200) INSERT INTO a SELECT i FROM n;")

	// Nothing past upTo is pruned, whatever the bounds say.
	n, err := d.Log.Prune(ctx, changelog.Retention{MaxCount: 100, Batch: 64}, 50)
	if err != nil || n != 50 {
		t.Fatalf("prune up to 50: n=%d err=%v", n, err)
	}
	n, err = d.Log.Prune(ctx, changelog.Retention{MaxCount: 100, Batch: 64}, 1200)
	if err != nil || n != 1050 {
		t.Fatalf("prune to 100: n=%d err=%v", n, err)
	}
	pos, err := d.Log.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Head != 1200 || pos.Oldest != 1101 {
		t.Fatalf("position %+v, want head 1200 oldest 1101", pos)
	}
	// Age: make the first 40 retained changes old.
	testenv.SQLite(t, path, "UPDATE sqlws_changes SET ts = 0 WHERE seq <= 1140;")
	if n, err = d.Log.Prune(ctx, changelog.Retention{MaxAge: time.Hour}, 1200); err != nil || n != 40 {
		t.Fatalf("prune by age: n=%d err=%v", n, err)
	}
	// Everything too old: all but the newest change go — it holds the head, so seq
	// never goes back.
	testenv.SQLite(t, path, "UPDATE sqlws_changes SET ts = 0;")
	if _, err = d.Log.Prune(ctx, changelog.Retention{MaxAge: time.Hour}, 1200); err != nil {
		t.Fatal(err)
	}
	pos, _ = d.Log.Position(ctx)
	if pos.Head != 1200 || pos.Oldest != 1200 {
		t.Fatalf("after pruning all: %+v, want head 1200 oldest 1200 (the newest kept)", pos)
	}
	testenv.SQLite(t, path, "INSERT INTO a VALUES (5000);")
	if _, err := d.Log.ReadChanges(ctx, 0, 10, 0); !errors.Is(err, models.ErrGap) {
		t.Fatalf("reading from 0 across the pruned changes: %v, want models.ErrGap", err)
	}
	if ch := readAll(t, d, 1200); len(ch) != 1 || ch[0].Seq != 1201 {
		t.Fatalf("after pruning all, next change = %+v, want seq 1201", ch)
	}
}
