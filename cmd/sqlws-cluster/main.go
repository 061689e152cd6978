// Command sqlws-cluster runs a local scale-out cluster for trying sqlws's edges
// (docs/scaling.md): a nats-server with JetStream, a source (`sqlws serve --publish`)
// and two edges (`sqlws edge`), each a real process. It prints their URLs and stops
// them all, in order, on Ctrl-C (SIGINT) or SIGTERM. `make run-cluster` builds the
// binaries and runs it on the demo database.
//
//	sqlws-cluster [--sqlws bin/sqlws] [--nats-server bin/nats-server] [--db sqlws-demo.db] [flags]
//
// It is a development tool of its own, not a sqlws subcommand: the product binary
// carries only what a deployment runs, and a deployment runs its own NATS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sqlws/sqlws/internal/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one ends this process at once (the
		// default disposition), and the kernel kills the children with it
		// (Pdeathsig): an impatient second Ctrl-C never leaves orphans behind.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "sqlws-cluster: %v\n", err)
		os.Exit(1)
	}
}

// run starts the cluster, prints where everything is, and waits for ctx to end (the
// signal) or for a process to exit on its own, which stops the rest and is an error.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("sqlws-cluster", flag.ContinueOnError)
	self, _ := os.Executable()
	sqlws := fs.String("sqlws", "", "the sqlws binary (default: sqlws beside this binary, else on PATH)")
	natsBin := fs.String("nats-server", "", "the nats-server binary (default: nats-server beside this binary, else on PATH; make nats-server builds it)")
	db := fs.String("db", "sqlws-demo.db", "the database the source serves")
	demo := fs.Bool("demo", false, "create and seed a todos table when the database has no user tables (serve --demo)")
	dir := fs.String("dir", ".cluster", "directory for the NATS config, its JetStream store and the logs (kept between runs)")
	natsAddr := fs.String("nats-addr", "127.0.0.1:4222", "NATS client address (port 0: any free port)")
	sourceAddr := fs.String("source-addr", "127.0.0.1:8080", "the source's address")
	edgeAddrs := fs.String("edge-addrs", "127.0.0.1:8081,127.0.0.1:8082", "comma-separated addresses, one edge each")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on each start-up step and on each process's stop")
	fresh := fs.Bool("fresh", false, "remove the JetStream store in --dir before starting (the source publishes its changelog again)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if *sqlws, err = findBinary("sqlws", *sqlws, self); err != nil {
		return fmt.Errorf("--sqlws: %w (make build)", err)
	}
	if *natsBin, err = findBinary("nats-server", *natsBin, self); err != nil {
		return fmt.Errorf("--nats-server: %w (make nats-server builds it from the version in go.mod)", err)
	}
	o := cluster.Options{Sqlws: *sqlws, NATSServer: *natsBin, Dir: *dir, DB: *db,
		NATSAddr: *natsAddr, SourceAddr: *sourceAddr, Timeout: *timeout}
	for _, a := range strings.Split(*edgeAddrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.EdgeAddrs = append(o.EdgeAddrs, a)
		}
	}
	if len(o.EdgeAddrs) == 0 {
		return errors.New("--edge-addrs: no address")
	}
	if *demo {
		o.SourceArgs = append(o.SourceArgs, "--demo")
	}
	store := filepath.Join(*dir, "nats")
	if *fresh {
		if err := os.RemoveAll(store); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "starting nats-server, a source and %d edges (logs in %s) …\n", len(o.EdgeAddrs), *dir)
	c, err := cluster.Start(ctx, o)
	if err != nil {
		if strings.Contains(err.Error(), "another database's changes") {
			// The usual cause: the demo database was deleted and created again while
			// the store kept the old one's stream. The store only ever holds what the
			// database's changelog holds, so starting over loses nothing.
			err = fmt.Errorf("%w\n\nThe JetStream store in %s holds the stream of an earlier database at %s. It only "+
				"caches that database's changes: start again with --fresh (make run-cluster FRESH=1) or remove %s", err, store, o.DB, store)
		}
		return err
	}
	printCluster(out, c, o, *demo)

	var runErr error
	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "\nstopping: edges, source, nats-server … (Ctrl-C again kills them)")
	case p := <-c.Exited():
		runErr = fmt.Errorf("%s exited on its own (%v); stopping the rest. Its log:\n%s", p.Name, p.ExitError(), p.LogTail(2000))
	}
	if err := c.Stop(); err != nil && runErr == nil {
		runErr = fmt.Errorf("stop: %w", err)
	}
	if runErr == nil {
		fmt.Fprintln(out, "stopped")
	}
	return runErr
}

func printCluster(out io.Writer, c *cluster.Cluster, o cluster.Options, demo bool) {
	w := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	w("")
	w("sqlws cluster running — Ctrl-C stops everything")
	w("")
	w("  nats     %-26s JetStream, store %s (pid %d)", c.NATS.URL, filepath.Join(o.Dir, "nats"), c.NATS.PID)
	w("  source   %-26s dashboard, REST, /ws; serves %s (pid %d)", c.Source.URL, o.DB, c.Source.PID)
	for i, e := range c.Edges {
		w("  edge %d   %-26s dashboard and REST via the source, /ws at %s (pid %d)", i+1, e.URL, wsURL(e.URL), e.PID)
	}
	w("")
	w("Open each edge's URL in a browser (its dashboard's live feed comes from that edge), then write:")
	if demo {
		w("  sqlite3 %s \"INSERT INTO todos(title) VALUES ('hello from the shell')\"", shellQuote(o.DB))
	} else {
		w("  sqlite3 %s   # then INSERT, UPDATE or DELETE a row", shellQuote(o.DB))
	}
	w("A WebSocket client connects to an edge's /ws exactly as to the source (docs/scaling.md).")
	w("Logs: %s/{nats,source,edge1,…}.log", o.Dir)
}

// wsURL turns http://HOST:PORT into ws://HOST:PORT/ws.
func wsURL(u string) string {
	return "ws" + strings.TrimPrefix(u, "http") + "/ws"
}

func shellQuote(s string) string {
	if strings.ContainsAny(s, " '\"$`\\") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

// findBinary resolves a program: path if given, else name in self's directory (make
// puts every binary in bin/), else name on PATH. The result is absolute.
func findBinary(name, path, self string) (string, error) {
	if path != "" {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", err
		}
		return filepath.Abs(p)
	}
	if self != "" {
		if p, err := exec.LookPath(filepath.Join(filepath.Dir(self), name)); err == nil {
			return filepath.Abs(p)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("no %s beside %s or on PATH", name, self)
	}
	return filepath.Abs(p)
}
