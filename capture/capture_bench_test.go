package capture_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/internal/testdb"
	"github.com/sqlws/sqlws/internal/testenv"
)

// BenchmarkCapture measures what capture costs a writer: another connection inserts
// rows, in 1-row and in 1,000-row transactions, into a plain table and into the same
// table captured in several ways, and it reports each variant's rate divided by the
// plain table's: the write cost of capture, rows/s with capture ÷ without (what
// sqlws-bench measures with a server running, here the triggers alone).
//
// The variants take turns, a few transactions each, and each ratio is the median over
// the turns of the variant's rate over the plain table's rate in the same turn. This
// machine's speed drifts by up to half within seconds, so rates measured one variant
// after another (as this benchmark first did) differed by more than the effects it
// was meant to show; paired turns agree to about ±0.01 from one run to the next.
//
//	go test -run '^$' -bench Capture ./capture
func BenchmarkCapture(b *testing.B) {
	const table = "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT NULL)"
	// The capture timestamp, as the triggers write it; the no-ts variant replaces it
	// with 0 to show what the writer's clock costs.
	const tsSQL = "CAST((julianday() - 2440587.5) * 86400000 + 0.5 AS INTEGER)"
	variants := []struct {
		name    string
		schema  string
		capture bool
		noTS    bool
	}{
		{"plain", table, false, false},
		// The reference the write-cost comparison quotes (README, docs/performance.md):
		// json_object of the new row into an AUTOINCREMENT log (no key, no timestamp;
		// REALs lossy, BLOBs fail).
		{"naive", table + `;
			CREATE TABLE naive_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, op TEXT NOT NULL, old TEXT, new TEXT);
			CREATE TRIGGER naive AFTER INSERT ON r BEGIN
				INSERT INTO naive_log (tbl, op, new) VALUES ('r', 'insert', json_object('id', NEW.id, 'n', NEW.n, 'payload', NEW.payload));
			END`, false, false},
		{"captured", table, true, false},
		{"captured-strict", table + " STRICT", true, false},
		{"captured-real", strings.Replace(table, "n INTEGER", "n REAL", 1), true, false}, // fractions: each goes out tagged
		// Not something sqlws offers: the capture triggers without the timestamp.
		{"captured-no-ts", table, true, true},
		// The least a native layout can do, for reference: a hand-written trigger that
		// copies the values and the timestamp into a changelog with 8 value columns.
		{"native-min", table + ";" + nativeLog(8), false, false},
	}
	for _, txn := range []int{1, 1000} {
		b.Run(fmt.Sprintf("txn=%d", txn), func(b *testing.B) {
			ctx := context.Background()
			type writer struct {
				real  bool // n is REAL: write fractions, the costly case
				conn  *sql.Conn
				ins   *sql.Stmt
				nsRow []float64 // per turn
			}
			ws := make([]*writer, len(variants))
			for i, v := range variants {
				path := testenv.NewDB(b, v.schema+";")
				if v.capture {
					d, err := testdb.OpenErr(path, testdb.Options{})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := d.Syncer.Install(ctx); err != nil {
						b.Fatal(err)
					}
					d.Close()
				}
				if v.noTS {
					trig := testenv.SQLite(b, path, "SELECT sql FROM sqlite_master WHERE name = 'sqlws_insert_r'")
					if !strings.Contains(trig, tsSQL) {
						b.Fatalf("the insert trigger has no %s: %s", tsSQL, trig)
					}
					testenv.SQLite(b, path, "DROP TRIGGER sqlws_insert_r; "+strings.Replace(strings.TrimSpace(trig), tsSQL, "0", 1)+";")
				}
				w, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { w.Close() })
				conn, err := w.Conn(ctx)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { conn.Close() })
				ins, err := conn.PrepareContext(ctx, "INSERT INTO r (n, payload) VALUES (?, ?)")
				if err != nil {
					b.Fatal(err)
				}
				ws[i] = &writer{real: strings.Contains(v.schema, "n REAL"), conn: conn, ins: ins}
			}
			payload := strings.Repeat("x", 64)
			turn := max(2*txn, 200) // rows per variant per turn
			write := func(w *writer, rows int) {
				start := time.Now()
				for i := 0; i < rows; {
					if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
						b.Fatal(err)
					}
					for j := 0; j < txn && i < rows; j, i = j+1, i+1 {
						var n any = i
						if w.real {
							n = float64(i) * 0.37
						}
						if _, err := w.ins.ExecContext(ctx, n, payload); err != nil {
							b.Fatal(err)
						}
					}
					if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
						b.Fatal(err)
					}
				}
				w.nsRow = append(w.nsRow, float64(time.Since(start))/float64(rows))
			}
			b.ResetTimer()
			// b.N rows into each variant; each turn starts with a different variant.
			for done, round := 0, 0; done < b.N; done, round = done+turn, round+1 {
				rows := min(turn, b.N-done)
				for k := range ws {
					write(ws[(k+round)%len(ws)], rows)
				}
			}
			b.StopTimer()
			plain := ws[0].nsRow
			b.ReportMetric(1e9/median(plain), "plain-rows/s")
			for i, w := range ws[1:] {
				ratios := make([]float64, len(plain))
				for r := range plain {
					ratios[r] = plain[r] / w.nsRow[r]
				}
				b.ReportMetric(median(ratios), variants[i+1].name+"÷plain")
			}
		})
	}
}

// nativeLog is a changelog that holds values as they are, in n value columns, and the
// insert trigger that writes r's rows into it.
func nativeLog(n int) string {
	var cols strings.Builder
	for i := range n {
		fmt.Fprintf(&cols, ", v%d", i)
	}
	return `CREATE TABLE native_log (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, op TEXT NOT NULL, sid INTEGER NOT NULL, ts INTEGER NOT NULL` + cols.String() + `);
		CREATE TRIGGER native AFTER INSERT ON r BEGIN
			INSERT INTO native_log (tbl, op, sid, ts, v0, v1, v2) VALUES ('r', 'insert', 1, CAST((julianday() - 2440587.5) * 86400000 + 0.5 AS INTEGER), NEW.id, NEW.n, NEW.payload);
		END`
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
