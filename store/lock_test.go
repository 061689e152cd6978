package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/store"
)

// TestServeLock: servers share the file; an admin command is refused while one
// serves it and gets the file once it stopped; a server waits for an admin command
// for at most the busy timeout.
func TestServeLock(t *testing.T) {
	path := testenv.NewDB(t, `CREATE TABLE a(id INTEGER PRIMARY KEY);`)
	ctx := context.Background()
	s1, err := store.Open(ctx, path, store.Options{Lock: store.LockServe})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := store.Open(ctx, path, store.Options{Lock: store.LockServe})
	if err != nil {
		t.Fatalf("a second server on the same file: %v", err)
	}
	_, err = store.Open(ctx, path, store.Options{Lock: store.LockAdmin})
	if !errors.Is(err, store.ErrServed) || !strings.Contains(err.Error(), path) {
		t.Fatalf("admin open while served: %v, want ErrServed naming %s", err, path)
	}
	s1.Close()
	if _, err = store.Open(ctx, path, store.Options{Lock: store.LockAdmin}); !errors.Is(err, store.ErrServed) {
		t.Fatalf("admin open while one of two servers still serves: %v", err)
	}
	s2.Close()
	admin, err := store.Open(ctx, path, store.Options{Lock: store.LockAdmin})
	if err != nil {
		t.Fatalf("admin open with no server: %v", err)
	}
	start := time.Now()
	_, err = store.Open(ctx, path, store.Options{Lock: store.LockServe, BusyTimeout: 300 * time.Millisecond})
	if !errors.Is(err, store.ErrAdminRunning) {
		t.Fatalf("serve open during an admin command: %v, want ErrAdminRunning", err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("serve gave up after %v, want it to wait about the busy timeout", waited)
	}
	admin.Close()
	s3, err := store.Open(ctx, path, store.Options{Lock: store.LockServe})
	if err != nil {
		t.Fatalf("serve open after the admin command: %v", err)
	}
	s3.Close()
	if _, err := store.Open(ctx, filepath.Join(t.TempDir(), "missing.db"), store.Options{Lock: store.LockAdmin}); err == nil || !strings.Contains(err.Error(), "no such database file") {
		t.Fatalf("admin open of a missing file: %v", err)
	}
}
