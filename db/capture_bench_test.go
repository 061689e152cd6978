package db_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/db"
	"github.com/sqlws/sqlws/internal/testenv"
)

// BenchmarkCapture measures what capture costs a writer: rows/s inserted by another
// connection (1,000-row transactions, as W5) into a plain table, and into the same
// table with sqlws's triggers, ordinary and STRICT. Compare the rows/s of one run:
// the ratio is W5's "triggers only" without the server.
//
//	go test -run '^$' -bench Capture -count 5 ./db
func BenchmarkCapture(b *testing.B) {
	const naive = `;
		CREATE TABLE naive_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, op TEXT NOT NULL, old TEXT, new TEXT);
		CREATE TRIGGER naive AFTER INSERT ON r BEGIN
			INSERT INTO naive_log (tbl, op, new) VALUES ('r', 'insert', json_object('id', NEW.id, 'n', NEW.n, 'payload', NEW.payload));
		END`
	for _, c := range []struct {
		name    string
		schema  string
		capture bool
	}{
		{"plain", "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT NULL)", false},
		// The reference W5 quotes: json_object of the new row into an AUTOINCREMENT log
		// (no key, no timestamp; REALs lossy, BLOBs fail).
		{"naive", "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT NULL)" + naive, false},
		{"captured", "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT NULL)", true},
		{"captured-strict", "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT NULL) STRICT", true},
		{"captured-real", "CREATE TABLE r (id INTEGER PRIMARY KEY, n REAL NOT NULL, payload TEXT NOT NULL)", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			path := testenv.NewDB(b, c.schema+";")
			ctx := context.Background()
			if c.capture {
				d, err := db.Open(ctx, path, db.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.Install(ctx); err != nil {
					b.Fatal(err)
				}
				d.Close()
			}
			w, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			w.SetMaxOpenConns(1)
			conn, err := w.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			ins, err := conn.PrepareContext(ctx, "INSERT INTO r (n, payload) VALUES (?, ?)")
			if err != nil {
				b.Fatal(err)
			}
			defer ins.Close()
			payload := strings.Repeat("x", 64)
			b.ResetTimer()
			for i := 0; i < b.N; {
				if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
					b.Fatal(err)
				}
				for j := 0; j < 1000 && i < b.N; j, i = j+1, i+1 {
					if _, err := ins.ExecContext(ctx, i, payload); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
