package store

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/errors"
)

// A read-only file at run time (WAL mode gives no easy way to provoke it under an
// open writer) is classified from a real SQLITE_READONLY result: 503 "database is
// read-only", logged once per episode with the code.
func TestClassifyReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	rw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := rw.Exec("CREATE TABLE a(x)"); err != nil {
		t.Fatal(err)
	}
	ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	_, werr := ro.Exec("INSERT INTO a VALUES (1)")
	if sqliteCode(werr) != 8 {
		t.Fatalf("write on a read-only connection: %v, want SQLITE_READONLY", werr)
	}
	kind, code, msg := errors.Public(Classify("create row", werr))
	if kind != errors.Unavailable || code != "unavailable" || msg != "database is read-only; retry later" {
		t.Fatalf("classified as %v %q %q", kind, code, msg)
	}
	var logs strings.Builder
	l := &faultLog{path: "writes", db: path, log: slog.New(slog.NewTextHandler(&logs, nil))}
	l.fail("create row", werr)
	l.fail("create row", werr)
	l.ok()
	l.ok()
	out := logs.String()
	if strings.Count(out, "database writes failing: database is read-only") != 1 || !strings.Contains(out, "sqlite_result=SQLITE_READONLY") ||
		strings.Count(out, "database writes recovered") != 1 || !strings.Contains(out, "failed_calls=2") {
		t.Fatalf("episode log:\n%s", out)
	}
	// A constraint error, a cancelled request and a plain error are not faults.
	if _, ok := faultOf(context.Canceled); ok {
		t.Fatal("a cancelled context is a storage fault")
	}
}

func TestCodeName(t *testing.T) {
	for code, want := range map[int]string{778: "SQLITE_IOERR_WRITE", 13: "SQLITE_FULL", 8: "SQLITE_READONLY", 5: "SQLITE_BUSY"} {
		if got := codeName(code); got != want {
			t.Errorf("codeName(%d) = %q, want %q", code, got, want)
		}
	}
	if got := codeName(8 | 4<<8); !strings.HasPrefix(got, "SQLITE_READONLY") {
		t.Errorf("codeName(SQLITE_READONLY_DBMOVED) = %q", got)
	}
}
