// Command sqlws serves a SQLite database as a live change feed over WebSocket, with
// REST CRUD and a browser dashboard.
//
//	sqlws serve --db app.db [--addr 127.0.0.1:8080]
//	sqlws migrate status|up|down --db app.db
//	sqlws uninstall --db app.db
//
// See docs/ for the protocol and every flag.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sqlws/sqlws/db"
	"github.com/sqlws/sqlws/web"
	"github.com/sqlws/sqlws/ws"
)

const usage = `sqlws turns a SQLite database into a live change feed.

Usage:
  sqlws serve --db PATH [flags]        serve WebSocket changes, REST and the dashboard
  sqlws migrate status|up|down --db PATH
  sqlws uninstall --db PATH            remove sqlws's triggers and tables
  sqlws tail --db-url URL [flags]      print a server's changes as JSON lines, resuming across restarts
  sqlws bench [flags]                  run the load benchmarks (see docs/performance.md)

Run 'sqlws COMMAND -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:], os.Stdout)
	case "migrate":
		err = migrate(ctx, os.Args[2:], os.Stdout)
	case "uninstall":
		err = uninstall(ctx, os.Args[2:], os.Stdout)
	case "bench":
		err = bench(ctx, os.Args[2:], os.Stdout)
	case "tail":
		err = runTail(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "sqlws: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "sqlws %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

type serveConfig struct {
	dbPath         string
	addr           string
	tables         string
	demo           bool
	retainAge      time.Duration
	retainCount    int64
	retainInterval time.Duration
	pingInterval   time.Duration
	pingTimeout    time.Duration
	writeTimeout   time.Duration
	readLimit      int64
	bodyLimit      int64
	windowChanges  int
	windowBytes    int
	poll           time.Duration
	busyTimeout    time.Duration
	origins        string
	logLevel       string
	debugAddr      string
	pumps          int
}

func serveFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.dbPath, "db", "", "SQLite database file (created if missing)")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address; port 0 picks a free port")
	fs.StringVar(&c.tables, "tables", "", "comma-separated tables to capture (default: every user table, including new ones)")
	fs.BoolVar(&c.demo, "demo", false, "create and seed a demo table when the database has no user tables")
	fs.DurationVar(&c.retainAge, "retain-age", 0, "prune changes older than this (0: keep)")
	fs.Int64Var(&c.retainCount, "retain-count", 0, "keep at most this many newest changes (0: no limit)")
	fs.DurationVar(&c.retainInterval, "retain-interval", time.Minute, "how often retention runs")
	fs.DurationVar(&c.pingInterval, "ping-interval", 30*time.Second, "WebSocket ping interval")
	fs.DurationVar(&c.pingTimeout, "ping-timeout", 15*time.Second, "close a peer whose pong takes longer")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 10*time.Second, "close a client that cannot take a frame within this")
	fs.Int64Var(&c.readLimit, "read-limit", 64<<10, "largest WebSocket client message in bytes (larger: close 1009)")
	fs.Int64Var(&c.bodyLimit, "body-limit", 1<<20, "largest REST request body in bytes (larger: 413)")
	fs.IntVar(&c.windowChanges, "window-changes", 100_000, "changes kept in memory for fan-out")
	fs.IntVar(&c.windowBytes, "window-bytes", 64<<20, "bytes of encoded changes kept in memory for fan-out")
	fs.DurationVar(&c.poll, "poll", 2*time.Millisecond, "how often to check for other processes' commits")
	fs.DurationVar(&c.busyTimeout, "busy-timeout", 5*time.Second, "how long a statement waits for a lock before 503")
	fs.StringVar(&c.origins, "allowed-origins", "", "comma-separated extra origins allowed to open WebSockets (same origin is always allowed)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&c.pumps, "pumps", 0, "goroutines writing live frames, each up to a core while a change fans out (0: half the cores, at least 1)")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "serve net/http/pprof on this separate address (e.g. 127.0.0.1:6060); keep it private")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func serve(ctx context.Context, args []string, stdout io.Writer) error {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.dbPath == "" {
		return fmt.Errorf("--db is required")
	}
	log, err := newLogger(c.logLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(log)

	d, err := db.Open(ctx, c.dbPath, db.Options{BusyTimeout: c.busyTimeout, Tables: splitList(c.tables)})
	if err != nil {
		return err
	}
	defer d.Close()
	if c.demo {
		if err := d.SeedDemo(ctx); err != nil {
			return err
		}
	}
	res, err := d.Install(ctx)
	if err != nil {
		return err
	}
	if len(res.Missing) > 0 {
		return fmt.Errorf("--tables names tables that do not exist: %s", strings.Join(res.Missing, ", "))
	}
	for _, sk := range res.Skipped {
		log.Warn("table not captured", "table", sk.Table, "reason", sk.Reason)
	}
	pos, err := d.Position(ctx)
	if err != nil {
		return err
	}
	log.Info("capturing", "db", d.Path(), "tables", len(res.Tables), "stream", d.StreamID(), "head", pos.Head, "oldest", pos.Oldest)

	// Start the window up to a full window behind the head: the tailer's first reads
	// fill it, so clients resuming after a restart are served from memory instead of
	// each reading the changelog.
	start := max(pos.Oldest-1, pos.Head-int64(c.windowChanges))
	hub := ws.NewHub(d, start, ws.Options{
		WindowChanges: c.windowChanges, WindowBytes: c.windowBytes,
		PingInterval: c.pingInterval, PingTimeout: c.pingTimeout, WriteTimeout: c.writeTimeout,
		ReadLimit: c.readLimit, OriginPatterns: splitList(c.origins), Pumps: c.pumps, Logger: log,
	})
	tailer := d.NewTailer(start, hub.Publish, db.TailerOptions{Poll: c.poll, Logger: log})

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           web.NewRouter(web.Config{DB: d, WebSocket: hub, BodyLimit: c.bodyLimit, Logger: log}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tailErr := make(chan error, 1)
	wg.Go(func() {
		// The tailer only returns an error when it cannot start; serving without it
		// would accept subscriptions that never get a change.
		if err := tailer.Run(runCtx); err != nil {
			tailErr <- fmt.Errorf("tailer: %w", err)
		}
	})
	wg.Go(func() {
		d.RunRetention(runCtx, db.Retention{MaxAge: c.retainAge, MaxCount: c.retainCount}, c.retainInterval, tailer.Last, log)
	})
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })

	var dsrv *http.Server
	if c.debugAddr != "" {
		dln, err := net.Listen("tcp", c.debugAddr)
		if err != nil {
			cancel()
			srv.Close()
			wg.Wait()
			return fmt.Errorf("--debug-addr: %w", err)
		}
		dsrv = &http.Server{Handler: debugMux(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { dsrv.Serve(dln) })
		log.Info("debug endpoints", "addr", "http://"+dln.Addr().String()+"/debug/pprof/")
	}

	url := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "sqlws listening on %s\n", url)
	// Exactly one line on stdout (scripts wait for it); the hint goes to stderr.
	fmt.Fprintf(os.Stderr, "open %s in a browser, then try:\n  %s\n", url, tryCommand(d))

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
	case runErr = <-tailErr:
	}
	// Stop accepting and finish REST requests while WebSockets close with 1001
	// (Shutdown does not track hijacked connections); each has its own deadline, so a
	// slow request cannot use up the clients' close handshakes. Then stop the tailer
	// and retention.
	shutDone := make(chan struct{})
	go func() {
		defer close(shutDone)
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	}()
	hctx, hcancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer hcancel()
	hub.Close(hctx)
	<-shutDone
	if dsrv != nil {
		dsrv.Close()
	}
	cancel()
	wg.Wait()
	if runErr == http.ErrServerClosed {
		runErr = nil
	}
	return runErr
}

// tryCommand is one sqlite3 command that makes a visible change: an insert into the
// demo table, or the shell on the user's own database.
func tryCommand(d *db.DB) string {
	if _, ok := d.Table("todos"); ok {
		return fmt.Sprintf(`sqlite3 %s "INSERT INTO todos(title) VALUES ('hello from the shell')"`, shellQuote(d.Path()))
	}
	return fmt.Sprintf("sqlite3 %s   # then INSERT, UPDATE or DELETE a row", shellQuote(d.Path()))
}

func shellQuote(s string) string {
	if strings.ContainsAny(s, " '\"$`\\") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

func openForAdmin(ctx context.Context, name string, args []string) (*db.DB, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("db", "", "SQLite database file")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if *path == "" {
		return nil, nil, fmt.Errorf("--db is required")
	}
	d, err := db.Open(ctx, *path, db.Options{})
	if err != nil {
		return nil, nil, err
	}
	return d, fs.Args(), nil
}

func migrate(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sqlws migrate status|up|down --db PATH")
	}
	verb := args[0]
	d, _, err := openForAdmin(ctx, "migrate "+verb, args[1:])
	if err != nil {
		return err
	}
	defer d.Close()
	switch verb {
	case "up":
		if err := d.Migrate(ctx); err != nil {
			return err
		}
		fmt.Fprintln(out, "migrated up")
	case "down":
		if err := d.MigrateDown(ctx); err != nil {
			return err
		}
		fmt.Fprintln(out, "migrated down one version (capture triggers removed)")
	case "status":
		st, err := d.MigrateStatus(ctx)
		if err != nil {
			return err
		}
		for _, s := range st {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			fmt.Fprintf(out, "%05d  %-8s %s\n", s.Version, state, s.Source)
		}
	default:
		return fmt.Errorf("unknown migrate command %q (want status, up or down)", verb)
	}
	return nil
}

func uninstall(ctx context.Context, args []string, out io.Writer) error {
	d, _, err := openForAdmin(ctx, "uninstall", args)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Uninstall(ctx); err != nil {
		return err
	}
	fmt.Fprintln(out, "removed sqlws triggers and tables; your tables are untouched")
	return nil
}
