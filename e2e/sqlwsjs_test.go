package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/internal/testenv"
)

// TestJSLiveQuery runs e2e/testdata/sqlwsjs/livequery.mjs in Node against the
// served web/static/sqlws.js: liveQuery's handling of every record shape a filtered
// subscription can deliver (moves, key changes), paging, reset and ending errors,
// with a fake socket, so each case is exact and needs no server. The browser tests
// cover the same library against the real server.
func TestJSLiveQuery(t *testing.T) { runJSUnit(t, "livequery.mjs") }

// TestJSToken runs e2e/testdata/sqlwsjs/token.mjs the same way: the token option
// (access_token on the WebSocket, Authorization on REST, refresh before exp with
// {type:'auth'}, reconnect with resume on close 4001 and on token_expired).
func TestJSToken(t *testing.T) { runJSUnit(t, "token.mjs") }

// runJSUnit runs one script of e2e/testdata/sqlwsjs in Node next to the served
// sqlws.js, which it must print "ok" for.
func runJSUnit(t *testing.T, script string) {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The file is served as an ES module; Node needs the .mjs name to load it as one.
	for src, dst := range map[string]string{
		filepath.Join(root, "web", "static", "sqlws.js"):          "sqlws.mjs",
		filepath.Join(root, "e2e", "testdata", "sqlwsjs", script): script,
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s (make deps-test installs node): %v\n%s", script, err, out)
	}
	if strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("node %s printed %q, want ok", script, out)
	}
}
