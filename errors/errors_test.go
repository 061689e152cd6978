package errors_test

import (
	"fmt"
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
		kind        errors.Kind
		code        errors.Code
		msg         string
		mustNotLeak string
	}{
		{"plain error is internal", fmt.Errorf("disk I/O error at /var/secret"), errors.Internal, "internal", "internal error", "/var/secret"},
		{"kind with message", errors.Errorf(errors.Invalid, "bad %q", "x"), errors.Invalid, "bad_request", `bad "x"`, ""},
		{"specific code", errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "unknown table %q", "t"), errors.NotFound, "unknown_table", `unknown table "t"`, ""},
		{"wrapped keeps message and hides cause", fmt.Errorf("outer: %w", busy), errors.Unavailable, "unavailable", "database is busy; retry", "SQLITE_BUSY"},
		{"E inherits kind and code", errors.E(errors.Op("subscribe"), errors.WithCode(errors.Conflict, errors.CodeDuplicateID, "dup")), errors.Conflict, "duplicate_id", "dup", ""},
		{"code of another kind is not taken", errors.E(errors.Unavailable, "retry", errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "no t")), errors.Unavailable, "unavailable", "retry", ""},
		{"internal kind hides message", errors.E(errors.Internal, "secret detail"), errors.Internal, "internal", "internal error", "secret"},
		{"E with a code argument", errors.E(errors.Invalid, errors.CodeBadFilter, "bad filter"), errors.Invalid, "bad_filter", "bad filter", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, code, msg := errors.Public(tc.err)
			if kind != tc.kind || code != tc.code || msg != tc.msg {
				t.Fatalf("Public = %v %q %q, want %v %q %q", kind, code, msg, tc.kind, tc.code, tc.msg)
			}
			if tc.mustNotLeak != "" && (strings.Contains(msg, tc.mustNotLeak) || strings.Contains(string(code), tc.mustNotLeak)) {
				t.Fatalf("leaked %q", tc.mustNotLeak)
			}
		})
	}
	if errors.KindOf(nil) != errors.Other {
		t.Fatal("KindOf(nil) wrong")
	}
	if !errors.Is(fmt.Errorf("w: %w", errors.ErrUnsupported), errors.ErrUnsupported) {
		t.Fatal("re-exported Is does not unwrap")
	}
}

// TestERejectsUnknownArguments: an argument E does not understand is a bug, and the
// result says so instead of silently dropping it.
func TestERejectsUnknownArguments(t *testing.T) {
	err := errors.E(errors.Invalid, "msg", 42)
	if errors.KindOf(err) != errors.Internal || !strings.Contains(err.Error(), "unknown argument of type int") {
		t.Fatalf("E(Invalid, msg, 42) = %v (kind %v), want an internal error naming the int", err, errors.KindOf(err))
	}
	if err := errors.E(errors.Invalid, "msg", nil); errors.KindOf(err) != errors.Invalid {
		t.Fatalf("a nil cause is not an error: %v", err)
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
