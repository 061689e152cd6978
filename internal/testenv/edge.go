package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartEdge runs `sqlws edge --nats natsURL --addr 127.0.0.1:0 extraArgs...` and waits
// (bounded) until it prints its listening line — it listens at once and serves /ws
// once it has the stream; use WaitReady for that. Cleanup and failure reporting are
// StartServer's. Restart of the returned Server starts a serve, not an edge: start
// another edge instead.
func StartEdge(t testing.TB, natsURL string, extraArgs ...string) *Server {
	t.Helper()
	args := append([]string{"edge", "--nats", natsURL, "--addr", "127.0.0.1:0"}, extraArgs...)
	return startCommand(t, args)
}

// startCommand runs the sqlws binary with args, for a command that prints
// ListeningPrefix once it listens, and owns it as StartServer does.
func startCommand(t testing.TB, args []string) *Server {
	t.Helper()
	s := &Server{Args: append([]string(nil), args...), t: t, stderr: &syncBuffer{}, done: make(chan struct{})}
	ready := make(chan string, 1)
	s.cmd = exec.Command(Binary(t), args...)
	s.stdout = &lineWatcher{prefix: ListeningPrefix, found: ready}
	s.cmd.Stdout = s.stdout
	s.cmd.Stderr = s.stderr
	s.cmd.WaitDelay = 5 * time.Second
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sqlws %s: %v", args[0], err)
	}
	go func() {
		s.cmd.Wait()
		s.state = s.cmd.ProcessState
		close(s.done)
	}()
	t.Cleanup(func() {
		s.shutdown()
		errs := s.Stderr()
		if strings.Contains(errs, "panic:") || strings.Contains(errs, "WARNING: DATA RACE") {
			t.Errorf("sqlws %s stderr shows a panic or data race:\n%s", args[0], tail(errs, 8000))
		} else if t.Failed() {
			t.Logf("sqlws (%s) stderr:\n%s", strings.Join(args, " "), tail(errs, 8000))
		}
	})
	select {
	case u := <-ready:
		s.URL = strings.TrimSpace(u)
		s.Addr = strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://") // https with --tls-cert
	case <-s.done:
		t.Fatalf("sqlws %s exited before listening (%v); stderr:\n%s", args[0], s.state, tail(s.Stderr(), 8000))
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("sqlws %s did not print %q within 30s; stderr:\n%s", args[0], ListeningPrefix, tail(s.Stderr(), 8000))
	}
	return s
}

// WaitReady waits (bounded by timeout) until the server's /readyz answers 200.
func (s *Server) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	WaitFor(t, timeout, s.URL+"/readyz", func() bool {
		resp, err := client.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

var (
	natsOnce sync.Once
	natsPath string
	natsDir  string
	natsErr  error
)

// BuildNATSServer builds nats-server (github.com/nats-io/nats-server/v2, at the
// version go.mod requires, as `make nats-server` does) once per process into a
// temporary directory and returns its path, for tests that run NATS as a process of
// its own rather than embedded (internal/natstest). Main removes the directory.
func BuildNATSServer() (string, error) {
	natsOnce.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			natsErr = err
			return
		}
		if natsDir, natsErr = os.MkdirTemp("", "sqlws-e2e-nats-"); natsErr != nil {
			return
		}
		natsPath = filepath.Join(natsDir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsPath, "github.com/nats-io/nats-server/v2")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			natsErr = fmt.Errorf("testenv: go build nats-server: %v\n%s", err, out)
		}
	})
	return natsPath, natsErr
}

// NATSServerBinary is BuildNATSServer failing the test if the build fails.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	p, err := BuildNATSServer()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
