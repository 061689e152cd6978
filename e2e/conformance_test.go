package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/internal/testenv"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// stepper drives e2e/testdata/nodews/conformance.mjs one step at a time.
type stepper struct {
	t   *testing.T
	in  io.WriteCloser
	out chan map[string]json.RawMessage
}

func startConformance(t *testing.T, url string) *stepper {
	t.Helper()
	dir, _ := filepath.Abs("testdata/nodews")
	cmd := exec.Command("node", "conformance.mjs", url)
	cmd.Dir = dir
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("node (make deps-test installs it and the ws package): %v", err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("node stderr: %s", stderr.String())
		}
	})
	s := &stepper{t: t, in: in, out: make(chan map[string]json.RawMessage, 16)}
	go func() {
		defer close(s.out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m map[string]json.RawMessage
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				s.out <- m
			}
		}
	}()
	return s
}

// step asks for one step and returns its result, failing on an error report.
func (s *stepper) step(name string) map[string]json.RawMessage {
	s.t.Helper()
	fmt.Fprintln(s.in, name)
	select {
	case m, ok := <-s.out:
		if !ok {
			s.t.Fatalf("step %s: the node client exited", name)
		}
		if string(m["step"]) == `"error"` {
			s.t.Fatalf("step %s: node reports %s", name, m["error"])
		}
		return m
	case <-time.After(timeout):
		s.t.Fatalf("step %s: no result within %v", name, timeout)
	}
	return nil
}

// changesFrameLen is the payload length of a changes frame for subscription "a" that
// carries one insert into t(id INTEGER PRIMARY KEY, v TEXT) of row (seq, v): what
// sqlws sends, computed from the record format, with a 13-digit timestamp.
func changesFrameLen(seq int64, vLen int) int {
	img := fmt.Appendf(nil, `{"id":%d,"v":"%s"}`, seq, strings.Repeat("x", vLen))
	rec := models.AppendChange(nil, seq, "t", models.OpInsert, fmt.Appendf(nil, `{"id":%d}`, seq), nil, img, 1_700_000_000_000)
	return len(protocol.AppendChanges(nil, []byte(`"a"`), []models.Encoded{{Seq: seq, JSON: rec}}))
}

// TestFrameConformanceNodeWS drives the server with Node's ws, an independent
// implementation of RFC 6455, through server frames at every payload-length
// boundary — 7-bit lengths in the replies (hello, subscribed; no change record is
// that short), 16-bit and 64-bit in changes frames, on both sides of 65535/65536 —
// pings in between, a client message fragmented around a ping, and a clean close;
// each frame must arrive whole, valid and in order, with exactly the payload length
// the record format predicts.
func TestFrameConformanceNodeWS(t *testing.T) {
	t.Parallel()
	db, srv := start(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`)
	s := startConformance(t, srv.WSURL())
	s.step("subscribe")
	targets := []int{0, 65535, 65536, 65537, 300_000, 1 << 20}
	for i, target := range targets {
		seq := int64(i + 1)
		vLen := target - changesFrameLen(seq, 0)
		if vLen < 0 {
			vLen = 0 // the smallest frame there is
			target = changesFrameLen(seq, 0)
		}
		testenv.SQLite(t, db, fmt.Sprintf("INSERT INTO t(id, v) VALUES (%d, replace(hex(zeroblob(%d)), '00', 'x'));", seq, vLen))
		m := s.step("frame")
		var bytes int
		var seqs []int64
		json.Unmarshal(m["bytes"], &bytes)
		json.Unmarshal(m["seqs"], &seqs)
		if bytes != target || len(seqs) != 1 || seqs[0] != seq {
			t.Errorf("frame for a %d-byte payload: node received %d bytes, seqs %v", target, bytes, seqs)
		}
		if i%3 == 2 {
			s.step("ping")
		}
	}
	s.step("fragmented")
	if m := s.step("close"); string(m["code"]) != "1000" {
		t.Errorf("close: %s, want 1000", m["code"])
	}
}
