package client

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sqlws/sqlws/internal/testenv"
)

// TestMain builds the sqlws binary the tests serve with, runs the tests, and then
// fails the run if any goroutine is left: every goroutine the client starts has an
// owner that stops it.
func TestMain(m *testing.M) {
	bin, err := testenv.BuildBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.RemoveAll(filepath.Dir(bin))
	os.Exit(code)
}

func TestFullJitter(t *testing.T) {
	const lo, hi = 250 * time.Millisecond, 30 * time.Second
	for n := 1; n <= 40; n++ {
		ceil := min(hi, lo<<min(n-1, 20))
		var seen time.Duration
		for range 200 {
			d := fullJitter(n, lo, hi)
			if d < 0 || d >= ceil {
				t.Fatalf("fullJitter(%d) = %v, want in [0, %v)", n, d, ceil)
			}
			seen = max(seen, d)
		}
		if seen < ceil/2 {
			t.Errorf("fullJitter(%d): largest of 200 draws %v, want up to %v", n, seen, ceil)
		}
	}
}

func TestWebSocketURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8080/ws":        "ws://127.0.0.1:8080/ws",
		"wss://h/feed/":                 "wss://h/feed/",
		"ws://h":                        "ws://h",
		"http://127.0.0.1:8080":         "ws://127.0.0.1:8080/ws",
		"http://127.0.0.1:8080/":        "ws://127.0.0.1:8080/ws",
		"https://h:443/prefix/ws?x=1#f": "wss://h:443/prefix/ws?x=1",
		"HTTP://h/":                     "ws://h/ws",
	} {
		got, err := WebSocketURL(in)
		if err != nil || got != want {
			t.Errorf("WebSocketURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"ftp://h/ws", "/ws", "127.0.0.1:8080", "ws:///ws", "http://[::1"} {
		if got, err := WebSocketURL(in); err == nil {
			t.Errorf("WebSocketURL(%q) = %q, want an error", in, got)
		}
	}
}
