package changelog_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
)

// BenchmarkReadChanges reads a page of 1,000 changes of the bench's table (an
// integer key, an integer and 64 bytes of text) from a changelog on disk, as a
// resuming subscriber's catch-up does, in each layout: native rows (copied values)
// and JSON rows (the layout of tables too wide for the native one).
//
//	go test -run '^$' -bench ReadChanges ./changelog
func BenchmarkReadChanges(b *testing.B) {
	for _, layout := range []string{"native", "json"} {
		b.Run(layout, func(b *testing.B) {
			schema := "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT NULL"
			if layout == "json" {
				for i := range 40 {
					schema += fmt.Sprintf(", c%d", i)
				}
			}
			path := testenv.NewDB(b, schema+");")
			d := testdb.Install(b, path, testdb.Options{})
			testenv.SQLite(b, path, `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20000)
				INSERT INTO r (id, n, payload) SELECT i, i * 7, printf('%.64c', 'x') FROM s;`)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				after := int64(i%19) * 1000
				out, err := d.Log.ReadChanges(ctx, after, 1000, 0)
				if err != nil || len(out) != 1000 {
					b.Fatalf("read %d changes: %v", len(out), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/change")
		})
	}
}
