package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sqlws/sqlws/internal/testenv"
)

// The tests run this test binary as the supervisor (runAsMain), with real sqlws and
// nats-server processes under it, and stop it as a terminal would: SIGINT to it alone.
const runAsMain = "SQLWS_CLUSTER_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsMain) == "1" {
		main()
		os.Exit(0)
	}
	testenv.Main(m)
}

// supervisor is a running sqlws-cluster.
type supervisor struct {
	cmd   *exec.Cmd
	lines chan string // its stdout, line by line; closed at EOF
	out   strings.Builder
	done  chan struct{}
	urls  map[string]string // nats, source, edge 1, edge 2 → URL
	pids  map[string]int
	dir   string
	db    string
}

var procLine = regexp.MustCompile(`^\s+(nats|source|edge \d+)\s+(\S+)\s.*\(pid (\d+)\)$`)

// startSupervisor runs the supervisor on a new demo database with every port free
// and waits (bounded) until it has printed the running cluster.
func startSupervisor(t *testing.T) *supervisor {
	t.Helper()
	return startSupervisorIn(t, t.TempDir())
}

// startSupervisorIn is startSupervisor in a given directory, with extra flags.
func startSupervisorIn(t *testing.T, dir string, extra ...string) *supervisor {
	t.Helper()
	s := runSupervisor(t, dir, extra...)
	if err := s.waitRunning(t); err != "" {
		t.Fatal(err)
	}
	return s
}

// runSupervisor starts the supervisor on dir/demo.db with its state in dir/cluster.
func runSupervisor(t *testing.T, dir string, extra ...string) *supervisor {
	t.Helper()
	s := &supervisor{lines: make(chan string, 64), done: make(chan struct{}),
		urls: map[string]string{}, pids: map[string]int{}, dir: filepath.Join(dir, "cluster"), db: filepath.Join(dir, "demo.db")}
	args := append([]string{"--sqlws", testenv.Binary(t), "--nats-server", testenv.NATSServerBinary(t),
		"--db", s.db, "--demo", "--dir", s.dir, "--timeout", "20s",
		"--nats-addr", "127.0.0.1:0", "--source-addr", "127.0.0.1:0", "--edge-addrs", "127.0.0.1:0,127.0.0.1:0"}, extra...)
	s.cmd = exec.Command(os.Args[0], args...)
	s.cmd.Env = append(os.Environ(), runAsMain+"=1")
	s.cmd.Stderr = &s.out
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
		close(s.lines)
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		// A failed test must not leave a cluster behind: kill the supervisor, whose
		// children die with it (Pdeathsig), and check that they did.
		s.cmd.Process.Kill()
		<-s.done
		for name, pid := range s.pids {
			waitGone(t, name, pid)
		}
	})
	return s
}

// waitRunning waits (bounded) until the supervisor has printed the running cluster;
// it returns why not, or "" once it has.
func (s *supervisor) waitRunning(t *testing.T) string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				<-s.done
				return fmt.Sprintf("supervisor exited before the cluster ran (%v); stderr:\n%s", s.cmd.ProcessState, s.out.String())
			}
			if m := procLine.FindStringSubmatch(line); m != nil {
				s.urls[m[1]] = m[2]
				s.pids[m[1]], _ = strconv.Atoi(m[3])
			}
			if strings.HasPrefix(line, "Logs:") { // the last line of the listing
				if len(s.urls) != 4 {
					return fmt.Sprintf("want nats, source and two edges, got %v", s.urls)
				}
				return ""
			}
		case <-deadline:
			t.Fatalf("the cluster did not start within 60s; stderr:\n%s", s.out.String())
		}
	}
}

// wait returns the supervisor's remaining stdout once it has exited (bounded).
func (s *supervisor) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	var b strings.Builder
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				<-s.done
				return b.String()
			}
			b.WriteString(line + "\n")
		case <-deadline:
			t.Fatalf("supervisor still running %v after it was told to stop; stdout so far:\n%s", timeout, b.String())
		}
	}
}

// waitGone waits (bounded) until pid no longer exists. The supervisor reaps its
// children, so a pid that stays means a child outlived it.
func waitGone(t *testing.T, name string, pid int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, name+" (pid "+strconv.Itoa(pid)+") to be gone", func() bool {
		return syscall.Kill(pid, 0) == syscall.ESRCH
	})
}

// TestClusterStartsAndStops runs `sqlws-cluster` as make run-cluster does (on free
// ports): NATS answers, an insert with the sqlite3 CLI reaches WebSocket clients of
// both edges, REST through an edge reaches the source; then SIGINT to the supervisor
// alone stops every process cleanly, in order, and it exits 0.
func TestClusterStartsAndStops(t *testing.T) {
	s := startSupervisor(t)
	if !strings.HasPrefix(s.urls["nats"], "nats://127.0.0.1:") {
		t.Fatalf("nats URL %q", s.urls["nats"])
	}
	var clients []*testenv.Client
	for _, e := range []string{"edge 1", "edge 2"} {
		c := testenv.Dial(t, s.urls[e])
		c.Subscribe("todos", []string{"todos"}, nil, "")
		clients = append(clients, c)
	}
	testenv.SQLite(t, s.db, `INSERT INTO todos(title) VALUES ('hello from the shell');`)
	for i, c := range clients {
		ch := c.WaitChanges("todos", 1, testenv.Timeout)
		if ch[0].Table != "todos" || ch[0].Op != "insert" || !strings.Contains(string(ch[0].New), "hello from the shell") {
			t.Fatalf("edge %d: got %+v", i+1, ch[0])
		}
	}
	resp, err := http.Get(s.urls["edge 1"] + "/api/tables/todos/rows")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hello from the shell") {
		t.Fatalf("REST through edge 1: %s %s", resp.Status, body)
	}

	s.cmd.Process.Signal(os.Interrupt)
	rest := s.wait(t, 60*time.Second)
	if code := s.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(rest, "stopped") {
		t.Fatalf("exit %d after SIGINT; stdout:\n%s\nstderr:\n%s", code, rest, s.out.String())
	}
	for name, pid := range s.pids {
		waitGone(t, name, pid)
	}
	// Each stopped on SIGTERM from the supervisor and shut down on its own terms.
	for log, want := range map[string]string{"edge1": "shutting down", "edge2": "shutting down",
		"source": "shutting down", "nats": "Server Exiting"} {
		b, err := os.ReadFile(filepath.Join(s.dir, log+".log"))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s.log lacks %q (%v):\n%s", log, want, err, b)
		}
	}
	// Edges stopped before NATS did, so none saw NATS go away.
	for _, log := range []string{"edge1", "edge2"} {
		b, _ := os.ReadFile(filepath.Join(s.dir, log+".log"))
		if strings.Contains(string(b), "disconnected") {
			t.Errorf("%s saw NATS go before it stopped:\n%s", log, b)
		}
	}
}

// TestClusterStopsWhenAProcessDies: an edge killed behind the supervisor's back stops
// the rest and fails the supervisor, naming the edge, rather than leaving a cluster
// that looks up but is not.
func TestClusterStopsWhenAProcessDies(t *testing.T) {
	s := startSupervisor(t)
	if err := syscall.Kill(s.pids["edge 2"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.wait(t, 60*time.Second)
	if code := s.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(s.out.String(), "edge2 exited on its own") {
		t.Fatalf("exit %d; stderr:\n%s", code, s.out.String())
	}
	for name, pid := range s.pids {
		waitGone(t, name, pid)
	}
}

// TestClusterFresh: a demo database deleted and created again while the JetStream
// store is kept makes the source refuse the old database's stream; the supervisor
// says so and how to start over, and --fresh does.
func TestClusterFresh(t *testing.T) {
	dir := t.TempDir()
	s := startSupervisorIn(t, dir)
	s.cmd.Process.Signal(os.Interrupt)
	s.wait(t, 60*time.Second)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(s.db + suffix)
	}

	s = runSupervisor(t, dir)
	if err := s.waitRunning(t); !strings.Contains(err, "supervisor exited") ||
		!strings.Contains(s.out.String(), "another database's changes") || !strings.Contains(s.out.String(), "--fresh") {
		t.Fatalf("want a refusal naming --fresh, got %q; stderr:\n%s", err, s.out.String())
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d", code)
	}

	s = startSupervisorIn(t, dir, "--fresh")
	s.cmd.Process.Signal(os.Interrupt)
	if rest := s.wait(t, 60*time.Second); s.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("--fresh: exit %d\n%s\n%s", s.cmd.ProcessState.ExitCode(), rest, s.out.String())
	}
}

// TestFindBinary: an explicit path wins, then the binary's own directory, then PATH.
func TestFindBinary(t *testing.T) {
	dir := t.TempDir()
	exe := func(p string) string {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	self := exe(filepath.Join(dir, "bin", "sqlws-cluster"))
	onPath := exe(filepath.Join(dir, "path", "nats-server"))
	t.Setenv("PATH", filepath.Dir(onPath))
	if got, err := findBinary("nats-server", "", self); err != nil || got != onPath {
		t.Errorf("PATH: %q %v", got, err)
	}
	beside := exe(filepath.Join(dir, "bin", "nats-server"))
	if got, err := findBinary("nats-server", "", self); err != nil || got != beside {
		t.Errorf("beside: %q %v", got, err)
	}
	explicit := exe(filepath.Join(dir, "other", "nats-server"))
	if got, err := findBinary("nats-server", explicit, self); err != nil || got != explicit {
		t.Errorf("explicit: %q %v", got, err)
	}
	if _, err := findBinary("nats-server", filepath.Join(dir, "missing"), self); err == nil {
		t.Error("a missing explicit path must be an error")
	}
}
