package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sqlws/sqlws/internal/testenv"
)

// logLines counts the lines of a server's stderr that contain every one of substrs.
func logLines(stderr string, substrs ...string) int {
	n := 0
	for _, line := range strings.Split(stderr, "\n") {
		all := line != ""
		for _, s := range substrs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// TestUninstallWhileServing: uninstall and migrate down refuse while a server serves
// the file, saying so and how to proceed, and change nothing. With --force they
// proceed; the server then logs one error, closes its WebSockets with 1001 and exits
// non-zero, and the application's writes keep working.
func TestUninstallWhileServing(t *testing.T) {
	t.Parallel()
	for _, cmd := range [][]string{{"uninstall"}, {"migrate", "down"}} {
		name := strings.Join(cmd, " ")
		t.Run(name, func(t *testing.T) {
			db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
			c := srv.Dial(t)
			c.Subscribe("a", nil, nil, "")

			args := append(append([]string{}, cmd...), "--db", db)
			out, errs, code := testenv.RunBinary(t, args...)
			if code == 0 {
				t.Fatalf("%s while serving: exit 0\n%s", name, out)
			}
			for _, want := range []string{db, "being served by another sqlws process", "pid " + strconv.Itoa(srv.PID()), "stop that server first", "--force"} {
				if !strings.Contains(errs, want) {
					t.Errorf("%s refusal does not say %q:\n%s", name, want, errs)
				}
			}
			// Nothing was removed: the server still captures and delivers.
			testenv.SQLite(t, db, "INSERT INTO t(v) VALUES (1);")
			c.WaitChanges("a", 1, timeout)

			out, errs, code = testenv.RunBinary(t, append(args, "--force")...)
			if code != 0 || !strings.Contains(errs, "proceeding because of --force") {
				t.Fatalf("%s --force: exit %d\n%s%s", name, code, out, errs)
			}
			if code := srv.WaitExit(20 * time.Second); code == 0 {
				t.Errorf("server exited 0 after its tables were removed, want non-zero")
			}
			if code, err := c.WaitClosed(timeout); code != websocket.StatusGoingAway {
				t.Errorf("subscriber's connection ended with %d (%v), want 1001", code, err)
			}
			stderr := srv.Stderr()
			if n := logLines(stderr, "level=ERROR", "tables were removed from "+db); n != 1 {
				t.Errorf("%d error lines about the removed tables, want 1:\n%s", n, stderr)
			}
			if !strings.Contains(stderr, "sqlws serve: sqlws's tables were removed from "+db) {
				t.Errorf("exit message does not say why:\n%s", stderr)
			}
			if n := logLines(stderr, "level=WARN"); n > 2 {
				t.Errorf("%d warnings before shutting down, want at most 2:\n%s", n, stderr)
			}
			// No trigger is left to write into missing tables.
			testenv.SQLite(t, db, "INSERT INTO t(v) VALUES (2); UPDATE t SET v = 3; DELETE FROM t WHERE v = 3;")
		})
	}
}
