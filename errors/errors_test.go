package errors_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sqlws/sqlws/errors"
)

func TestPublic(t *testing.T) {
	busy := errors.E(errors.Op("create row"), errors.Unavailable, "database is busy; retry", fmt.Errorf("SQLITE_BUSY: database is locked"))
	for _, tc := range []struct {
		name        string
		err         error
		status      int
		code, msg   string
		mustNotLeak string
	}{
		{"plain error is internal", fmt.Errorf("disk I/O error at /var/secret"), 500, "internal", "internal error", "/var/secret"},
		{"kind with message", errors.Errorf(errors.Invalid, "bad %q", "x"), 400, "bad_request", `bad "x"`, ""},
		{"specific code", errors.WithCode(errors.NotFound, "unknown_table", "unknown table %q", "t"), 404, "unknown_table", `unknown table "t"`, ""},
		{"wrapped keeps message and hides cause", fmt.Errorf("outer: %w", busy), 503, "unavailable", "database is busy; retry", "SQLITE_BUSY"},
		{"E inherits kind and code", errors.E(errors.Op("subscribe"), errors.WithCode(errors.Conflict, "duplicate_id", "dup")), 409, "duplicate_id", "dup", ""},
		{"code of another kind is not taken", errors.E(errors.Unavailable, "retry", errors.WithCode(errors.NotFound, "unknown_table", "no t")), 503, "unavailable", "retry", ""},
		{"internal kind hides message", errors.E(errors.Internal, "secret detail"), 500, "internal", "internal error", "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, code, msg := errors.Public(tc.err)
			if status != tc.status || code != tc.code || msg != tc.msg {
				t.Fatalf("Public = %d %q %q, want %d %q %q", status, code, msg, tc.status, tc.code, tc.msg)
			}
			if tc.mustNotLeak != "" && (strings.Contains(msg, tc.mustNotLeak) || strings.Contains(code, tc.mustNotLeak)) {
				t.Fatalf("leaked %q", tc.mustNotLeak)
			}
		})
	}
	if errors.KindOf(nil) != errors.Other || errors.Invalid.HTTPStatus() != http.StatusBadRequest {
		t.Fatal("KindOf(nil) or HTTPStatus wrong")
	}
	if !errors.Is(fmt.Errorf("w: %w", errors.ErrUnsupported), errors.ErrUnsupported) {
		t.Fatal("re-exported Is does not unwrap")
	}
}

func TestClip(t *testing.T) {
	if got := errors.Clip("short"); got != "short" {
		t.Fatalf("Clip(short) = %q", got)
	}
	exact := strings.Repeat("a", errors.ClipLen)
	if got := errors.Clip(exact); got != exact {
		t.Fatalf("a string of exactly ClipLen bytes was clipped: %q", got)
	}
	long := strings.Repeat("a", 900<<10)
	if got := errors.Clip(long); got != strings.Repeat("a", errors.ClipLen)+"…" {
		t.Fatalf("Clip(900 KB) has %d bytes", len(got))
	}
	// A multi-byte rune straddling the limit is dropped whole, never split.
	s := strings.Repeat("a", errors.ClipLen-1) + "é" + "tail"
	got := errors.Clip(s)
	if got != strings.Repeat("a", errors.ClipLen-1)+"…" {
		t.Fatalf("Clip split a rune: %q", got)
	}
	if !utf8.ValidString(got) {
		t.Fatalf("Clip produced invalid UTF-8: %q", got)
	}
}
