// Package cluster starts and stops a local sqlws scale-out cluster as real processes:
// a nats-server with JetStream, a source (`sqlws serve --publish`) and edges (`sqlws
// edge`), as docs/scaling.md describes them. `make run-cluster` (cmd/sqlws-cluster)
// and the W8 scenario of sqlws-bench both use it, so what a newcomer watches and what
// the benchmark measures are started the same way.
//
// Every child runs in its own process group, so a Ctrl-C in the terminal reaches only
// the supervising program, which then stops the children in order (edges, source,
// NATS): edges do not log NATS going away, and the source's publisher is not cut
// off mid-batch. On Linux a child is also killed if the supervisor dies without
// stopping it (Pdeathsig), so no nats-server is left holding port 4222.
package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ListeningPrefix starts the one line `sqlws serve` and `sqlws edge` print on stdout
// once they listen.
const ListeningPrefix = "sqlws listening on "

// Options says what to start. Sqlws, NATSServer, Dir and DB are required.
type Options struct {
	// Sqlws is the sqlws binary (serve and edge).
	Sqlws string
	// NATSServer is the nats-server binary (make nats-server builds it from the
	// version in go.mod).
	NATSServer string
	// Dir holds the NATS configuration (nats.conf), its JetStream store (nats/) and
	// every process's log (nats.log, source.log, edge1.log, …). It is created if
	// missing and kept: a store that outlives the cluster keeps the stream, as a real
	// deployment's would.
	Dir string
	// DB is the database the source serves.
	DB string
	// NATSAddr is where NATS listens for clients (host:port; port 0 picks a free
	// one). Default 127.0.0.1:0.
	NATSAddr string
	// SourceAddr is the source's --addr (port 0 picks a free one). Default
	// 127.0.0.1:0.
	SourceAddr string
	// EdgeAddrs has one --addr per edge (port 0 picks a free one). Default two edges
	// on free ports.
	EdgeAddrs []string
	// SourceArgs and EdgeArgs are extra flags for `sqlws serve` and `sqlws edge`.
	SourceArgs, EdgeArgs []string
	// Timeout bounds each start-up step (NATS answering with JetStream, a node
	// listening, an edge ready) and each process's stop before it is killed.
	// Default 30s.
	Timeout time.Duration
}

// Proc is one process of the cluster.
type Proc struct {
	// Name is nats, source, edge1, edge2, …
	Name string
	// URL is nats://HOST:PORT for NATS, http://HOST:PORT for the source and edges.
	URL string
	// PID is the process id.
	PID int
	// LogPath is the file holding the process's stderr and stdout.
	LogPath string

	cmd      *exec.Cmd
	log      *os.File
	done     chan struct{} // closed once the process has exited and been reaped
	state    *os.ProcessState
	mu       sync.Mutex
	stopping bool
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitError describes how the process ended; nil while it runs and after a clean
// exit (status 0).
func (p *Proc) ExitError() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	if p.state == nil || p.state.Success() {
		return nil
	}
	return fmt.Errorf("%s (pid %d) %s", p.Name, p.PID, p.state)
}

// LogTail is the end of the process's log, for error messages.
func (p *Proc) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Cluster is a running NATS, source and edges.
type Cluster struct {
	NATS   *Proc
	Source *Proc
	Edges  []*Proc

	opts    Options
	exited  chan *Proc
	stopped sync.Once
	stopErr error
}

// Procs is every process, in start order.
func (c *Cluster) Procs() []*Proc {
	var ps []*Proc
	for _, p := range append([]*Proc{c.NATS, c.Source}, c.Edges...) {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Exited delivers each process that exits without Stop having asked it to.
func (c *Cluster) Exited() <-chan *Proc { return c.exited }

// Start starts NATS, waits until JetStream answers, starts the source publishing to
// it, then the edges (each with --source pointing at the source), and returns once
// every edge is ready (/readyz 200). On error everything started is stopped again.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Sqlws == "" || o.NATSServer == "" || o.Dir == "" || o.DB == "" {
		return nil, errors.New("cluster: Sqlws, NATSServer, Dir and DB are required")
	}
	if o.NATSAddr == "" {
		o.NATSAddr = "127.0.0.1:0"
	}
	if o.SourceAddr == "" {
		o.SourceAddr = "127.0.0.1:0"
	}
	if len(o.EdgeAddrs) == 0 {
		o.EdgeAddrs = []string{"127.0.0.1:0", "127.0.0.1:0"}
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "nats"), 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{opts: o, exited: make(chan *Proc, 2+len(o.EdgeAddrs))}
	if err := c.start(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	o := c.opts
	var err error
	if c.NATS, err = c.startNATS(ctx); err != nil {
		return err
	}
	src := append([]string{"serve", "--db", o.DB, "--addr", o.SourceAddr, "--publish", c.NATS.URL}, o.SourceArgs...)
	if c.Source, err = c.startNode(ctx, "source", src); err != nil {
		return err
	}
	for i, addr := range o.EdgeAddrs {
		args := append([]string{"edge", "--nats", c.NATS.URL, "--addr", addr, "--source", c.Source.URL}, o.EdgeArgs...)
		e, err := c.startNode(ctx, fmt.Sprintf("edge%d", i+1), args)
		if e != nil {
			c.Edges = append(c.Edges, e)
		}
		if err != nil {
			return err
		}
	}
	for _, e := range c.Edges {
		if err := c.waitReady(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// natsConf is the nats-server configuration: JetStream on file storage in the
// cluster's directory, bounded so that a runaway benchmark cannot fill a shared disk,
// and a ports file from which the address actually bound (port 0 → a free one) is read.
const natsConf = `# Written by sqlws's internal/cluster (make run-cluster, sqlws-bench W8).
server_name: sqlws_local
host: %q
port: %d
ports_file_dir: %q
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 4GB
}
`

func (c *Cluster) startNATS(ctx context.Context) (*Proc, error) {
	o := c.opts
	host, portText, err := net.SplitHostPort(o.NATSAddr)
	if err != nil {
		return nil, fmt.Errorf("NATS address %q: %w", o.NATSAddr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("NATS address %q: bad port", o.NATSAddr)
	}
	if port == 0 {
		port = -1 // nats-server's "any free port"; its 0 means 4222
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nats.conf")
	text := fmt.Sprintf(natsConf, host, port, dir, filepath.Join(dir, "nats"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	p, err := c.spawn("nats", o.NATSServer, []string{"-c", conf}, nil)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(o.Timeout)
	ports := filepath.Join(dir, fmt.Sprintf("%s_%d.ports", filepath.Base(o.NATSServer), p.PID))
	// nats-server writes the ports file once its listeners are bound (not atomically,
	// so a partial read is retried). There is no event to wait on short of parsing
	// its log, which is not an interface; poll the file, bounded.
	for p.URL == "" {
		if b, err := os.ReadFile(ports); err == nil {
			var pi struct {
				Nats []string `json:"nats"`
			}
			if json.Unmarshal(b, &pi) == nil && len(pi.Nats) > 0 {
				p.URL = pi.Nats[0]
				break
			}
		}
		if err := c.pause(ctx, p, deadline, "write its ports file"); err != nil {
			return p, err
		}
	}
	// Listening is not yet serving: wait until JetStream answers an account request.
	for {
		err := jetStreamAnswers(ctx, p.URL)
		if err == nil {
			return p, nil
		}
		if err := c.pause(ctx, p, deadline, "answer with JetStream ("+err.Error()+")"); err != nil {
			return p, err
		}
	}
}

// pause waits a poll interval, failing if p exited, the deadline passed or ctx ended.
func (c *Cluster) pause(ctx context.Context, p *Proc, deadline time.Time, what string) error {
	if time.Now().After(deadline) {
		return fmt.Errorf("%s did not %s within %v; log:\n%s", p.Name, what, c.opts.Timeout, p.LogTail(2000))
	}
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited (%v) before it could %s; log:\n%s", p.Name, p.state, what, p.LogTail(2000))
	case <-ctx.Done():
		return ctx.Err()
	}
}

func jetStreamAnswers(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Name("sqlws cluster check"), nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(actx)
	return err
}

// startNode starts a sqlws command and waits for its listening line.
func (c *Cluster) startNode(ctx context.Context, name string, args []string) (*Proc, error) {
	urlc := make(chan string, 1)
	p, err := c.spawn(name, c.opts.Sqlws, args, urlc)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(c.opts.Timeout)
	defer t.Stop()
	select {
	case p.URL = <-urlc:
		return p, nil
	case <-p.done:
		return p, fmt.Errorf("%s exited (%v) before listening; log:\n%s", name, p.state, p.LogTail(2000))
	case <-t.C:
		return p, fmt.Errorf("%s did not print %q within %v; log:\n%s", name, ListeningPrefix, c.opts.Timeout, p.LogTail(2000))
	case <-ctx.Done():
		return p, ctx.Err()
	}
}

// waitReady polls an edge's /readyz until it answers 200: the edge has the stream and
// has caught up with it.
func (c *Cluster) waitReady(ctx context.Context, p *Proc) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(c.opts.Timeout)
	last := ""
	for {
		resp, err := hc.Get(p.URL + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = strings.TrimSpace(string(b))
		} else {
			last = err.Error()
		}
		if err := c.pause(ctx, p, deadline, "become ready (last /readyz: "+last+")"); err != nil {
			return err
		}
	}
}

// spawn starts bin with args, its stderr and stdout into Dir/name.log. With urlc, the
// URL of sqlws's listening line is sent on it.
func (c *Cluster) spawn(name, bin string, args []string, urlc chan<- string) (*Proc, error) {
	logPath := filepath.Join(c.opts.Dir, name+".log")
	// O_APPEND: the child's stderr and this process's copy of its stdout share the
	// file, and an earlier run's log is kept above this one's.
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "==== %s %s %s\n", time.Now().UTC().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, LogPath: logPath, cmd: cmd, log: logf, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if u, ok := strings.CutPrefix(line, ListeningPrefix); ok && urlc != nil {
				select {
				case urlc <- strings.TrimSpace(u):
				default:
				}
			}
		}
		io.Copy(logf, stdout)
	}()
	go func() {
		<-copied // Wait closes the pipe: read it to the end first
		cmd.Wait()
		p.state = cmd.ProcessState
		logf.Close()
		close(p.done)
		p.mu.Lock()
		asked := p.stopping
		p.mu.Unlock()
		if !asked {
			c.exited <- p
		}
	}()
	return p, nil
}

// stop sends SIGTERM and waits up to the timeout, then kills. It reports a process
// that had to be killed or did not exit cleanly.
func (c *Cluster) stopProc(p *Proc) error {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	select {
	case <-p.done:
		return p.ExitError()
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(c.opts.Timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.ExitError()
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not stop within %v of SIGTERM and was killed", p.Name, p.PID, c.opts.Timeout)
	}
}

// Stop stops the edges (together), then the source, then NATS, each with SIGTERM
// and a bounded wait, then SIGKILL. It returns an error naming every process that had
// to be killed or exited with a failure status (a process that had already exited on
// its own counts too). Calling it again returns the same result.
func (c *Cluster) Stop() error {
	c.stopped.Do(func() {
		var mu sync.Mutex
		var errs []error
		add := func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}
		var wg sync.WaitGroup
		for _, e := range c.Edges {
			wg.Go(func() { add(c.stopProc(e)) })
		}
		wg.Wait()
		if c.Source != nil {
			add(c.stopProc(c.Source))
		}
		if c.NATS != nil {
			add(c.stopProc(c.NATS))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}
