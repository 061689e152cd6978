// Command sqlws serves a SQLite database as a live change feed over WebSocket, with
// REST CRUD and a browser dashboard.
//
//	sqlws serve --db app.db [--addr 127.0.0.1:8080]
//	sqlws migrate status|up|down --db app.db [--force]
//	sqlws uninstall --db app.db [--force]
//	sqlws capture pause|resume --db app.db --table T [--print]
//	sqlws edge --nats nats://HOST:4222 [--addr 127.0.0.1:8081] [--source URL]
//
// See docs/ for the protocol and every flag.
package main

import (
	"cmp"
	"context"
	"errors"
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

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/crud"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/metrics"
	"github.com/sqlws/sqlws/rules"
	"github.com/sqlws/sqlws/store"
	"github.com/sqlws/sqlws/web"
	"github.com/sqlws/sqlws/ws"
)

const usage = `sqlws turns a SQLite database into a live change feed.

Usage:
  sqlws serve --db PATH [flags]        serve WebSocket changes, REST and the dashboard
  sqlws migrate status|up|down --db PATH [--force]
  sqlws uninstall --db PATH [--force]  remove sqlws's triggers and tables
  sqlws capture pause|resume --db PATH --table T [--print]
                                       pause a table's capture for a schema change
  sqlws tail --db-url URL [flags]      print a server's changes as JSON lines, resuming across restarts
  sqlws edge --nats URL [flags]        serve WebSocket clients from the JetStream stream of a serve --publish

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
	case "capture":
		err = captureCommand(ctx, os.Args[2:], os.Stdout)
	case "tail":
		err = runTail(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "edge":
		err = runEdge(ctx, os.Args[2:], os.Stdout)
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
	memoryBudget   int64
	readyLag       int64
	poll           time.Duration
	busyTimeout    time.Duration
	origins        string
	logLevel       string
	debugAddr      string
	pumps          int
	maxSubs        int
	messageRate    float64
	messageBurst   int
	maxConns       int
	requestTimeout time.Duration
	idleTimeout    time.Duration
	publish        publishConfig  // scale-out (publish.go)
	security       securityConfig // authentication and rules (security.go)
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
	fs.IntVar(&c.windowBytes, "window-bytes", 64<<20, "bytes of encoded changes kept in memory for fan-out (at most a quarter of --memory-budget)")
	fs.Int64Var(&c.memoryBudget, "memory-budget", fanout.DefaultMemoryBudget, "bytes for the fan-out window and the changelog pages shared by subscribers catching up; past it, catching up slows instead of using more memory")
	fs.DurationVar(&c.poll, "poll", 2*time.Millisecond, "how often to check for other processes' commits")
	fs.DurationVar(&c.busyTimeout, "busy-timeout", 5*time.Second, "how long a statement waits for a lock before 503")
	fs.StringVar(&c.origins, "allowed-origins", "", "comma-separated extra origins (host[:port] or scheme://host[:port] patterns as path.Match: * for any characters) allowed to open WebSockets and to call REST across origins (CORS); same origin is always allowed")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&c.maxSubs, "max-subscriptions", 100, "most subscriptions one WebSocket connection may hold; more are refused with too_many_subscriptions")
	fs.Float64Var(&c.messageRate, "message-rate", 50, "client messages per second per WebSocket connection (bursts of --message-burst); more are refused with rate_limited, and a client that keeps on is closed with 1008 (negative: unlimited)")
	fs.IntVar(&c.messageBurst, "message-burst", 100, "burst of client messages per WebSocket connection above --message-rate")
	fs.IntVar(&c.pumps, "pumps", 0, "goroutines writing live frames, each up to a core while a change fans out (0: half the cores, at least 1)")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "serve net/http/pprof on this separate address (e.g. 127.0.0.1:6060); keep it private")
	fs.Int64Var(&c.readyLag, "ready-lag", 10_000, "/readyz answers 503 while the tailer is more than this many changes behind the database")
	fs.IntVar(&c.maxConns, "max-conns", 0, "most open client connections, HTTP and WebSocket; more are answered 503 (0: the descriptor limit less a reserve for SQLite)")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 30*time.Second, "longest a REST request may take to arrive (body included) and its response to be written")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 30*time.Second, "close an idle keep-alive HTTP connection after this")
	publishFlags(fs, &c.publish)
	securityFlags(fs, &c.security)
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
	fs.Usage = func() {
		envUsage(fs, fs.Output(), "Usage: sqlws serve --db PATH [flags]\n\nEvery flag can also be set by the environment variable shown (the flag wins).\n\n")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyEnv(fs); err != nil {
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
	// Access control is settled before the database is touched: a server that must
	// not start should change nothing.
	acc, err := c.security.settle(ctx, c.addr, log, "read and change every row")
	if err != nil {
		return err
	}
	verifier, proxies, cert, exposed := acc.verifier, acc.proxies, acc.cert, acc.exposed

	// The shared lock, held until d.Close, is what uninstall and migrate down test to
	// refuse to run under this server.
	d, err := store.Open(ctx, c.dbPath, store.Options{BusyTimeout: c.busyTimeout, Lock: store.LockServe, Logger: log})
	if err != nil {
		return err
	}
	defer d.Close()
	// The live schema of the tracked tables, read by REST and subscriptions, and the
	// syncer that keeps their capture triggers matching it; the changelog they feed.
	schema := capture.NewSchema(d, capture.Options{Tables: splitList(c.tables), Logger: log})
	syncer := capture.NewSyncer(schema)
	changes := changelog.New(d)
	defer changes.Close()
	rows := crud.New(d, schema, changes)
	defer rows.Close()
	problem, err := d.CheckWritable(ctx)
	if err != nil {
		return err
	}
	var res capture.SyncResult
	if problem == "" {
		if c.demo {
			if err := seedDemo(ctx, d); err != nil {
				return err
			}
		}
		if res, err = syncer.Install(ctx); err != nil {
			return err
		}
	} else {
		// Without write access nothing can be installed, but a file on which capture
		// is already in place still streams what others write.
		if res, err = syncer.ServeReadOnly(ctx, problem); err != nil {
			return err
		}
		log.Warn("serving read-only: "+problem, "db", d.Path(),
			"detail", "capture is installed and up to date, so changes others write still stream; REST writes answer 503 read_only; no migrations, trigger updates, retention or --demo")
	}
	if len(res.Missing) > 0 {
		return fmt.Errorf("--tables names tables that do not exist: %s", strings.Join(res.Missing, ", "))
	}
	for _, sk := range res.Skipped {
		log.Warn("table not captured", "table", sk.Table, "reason", sk.Reason)
	}
	ruleSet, err := loadRules(c.security.rulesPath, schema, log)
	if err != nil {
		return err
	}
	liveRules := rules.NewLive(ruleSet)
	if verifier != nil {
		log.Info("authentication on", "algorithms", strings.Join(verifier.Methods(), ","), "rules", cmp.Or(c.security.rulesPath, "none (any valid token may read and write everything)"))
	}
	pos, err := changes.Position(ctx)
	if err != nil {
		return err
	}
	log.Info("capturing", "db", d.Path(), "tables", len(res.Tables), "stream", d.StreamID(), "head", pos.Head, "oldest", pos.Oldest)

	// Start the window up to a full window behind the head: the tailer's first reads
	// fill it, so clients resuming after a restart are served from memory instead of
	// each reading the changelog.
	start := max(pos.Oldest-1, pos.Head-int64(c.windowChanges))
	win := fanout.NewWindow(changes, start, fanout.Options{WindowChanges: c.windowChanges, WindowBytes: c.windowBytes, MemoryBudget: c.memoryBudget})
	var verify func(string) (*auth.Identity, error)
	if verifier != nil {
		verify = verifier.Verify
	}
	hub := ws.NewHub(win, schema, ws.Options{
		PingInterval: c.pingInterval, PingTimeout: c.pingTimeout, WriteTimeout: c.writeTimeout,
		ReadLimit: c.readLimit, OriginPatterns: splitList(c.origins), Pumps: c.pumps, Logger: log,
		MaxSubscriptions: c.maxSubs, MessageRate: c.messageRate, MessageBurst: c.messageBurst, Verify: verify,
	})
	// Scale-out hook (publish.go): with --publish, what the tailer hands the hub also
	// goes to NATS JetStream for edge nodes; without, pub is nil and changes nothing.
	pub, err := startPublisher(ctx, c.publish, changes, schema.Tables, start, log)
	if err != nil {
		return err
	}
	defer pub.close()
	tailer := changes.NewTailer(start, pub.sink(hub.Publish), changelog.TailerOptions{Poll: c.poll, Dropped: pub.dropped(hub.TableDropped), SchemaChanged: schema.Poke, Logger: log})

	tcpln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	ln := web.NewListener(tcpln, web.ListenerOptions{MaxConns: c.maxConns, MaxConnsPerIP: c.security.maxConnsPerIP, TrustedProxies: proxies, Logger: log})
	// Every phase of a plain HTTP exchange is bounded, so a client that sends slowly,
	// reads slowly or idles cannot hold a connection; a WebSocket clears these
	// deadlines when it is upgraded and is bounded by pings and its write timeout.
	srv := &http.Server{
		Handler: web.NewRouter(web.Config{DB: rows, WebSocket: hub, BodyLimit: c.bodyLimit, Logger: log,
			Auth: verifier, Rules: liveRules, Insecure: exposed, WebSocketEnforcesRules: true,
			LoopbackBind: isLoopback(tcpln.Addr()), AllowedHosts: splitList(c.security.allowedHosts),
			RESTRate: c.security.restRate, RESTBurst: c.security.restBurst, TrustedProxies: proxies, AllowedOrigins: splitList(c.origins),
			Metrics: metrics.New(metrics.Sources{Hub: hub, Tailed: tailer.Last, TailStart: start, Position: changes.Position, DBPath: d.Path(),
				Listener: ln, MemoryBudget: c.memoryBudget, ReadyLag: c.readyLag})}),
		ReadHeaderTimeout: min(10*time.Second, c.requestTimeout),
		ReadTimeout:       c.requestTimeout,
		WriteTimeout:      c.requestTimeout,
		IdleTimeout:       c.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// The tailer and the trigger syncer return only when they cannot start or sqlws's
	// tables are gone; serving without either would accept subscriptions that never get
	// a change, or writes that are never captured.
	tailErr := make(chan error, 2)
	wg.Go(func() {
		if err := tailer.Run(runCtx); err != nil {
			tailErr <- fmt.Errorf("tailer: %w", err)
		}
	})
	// The schema watcher follows schema changes (the tailer pokes it when it sees one)
	// and the syncer installs triggers for them; REST and subscriptions read the
	// schema from the watcher, whether or not the tailer runs.
	wg.Go(func() { schema.Run(runCtx) })
	wg.Go(func() {
		if err := syncer.Run(runCtx); err != nil {
			tailErr <- err
		}
	})
	if r := (changelog.Retention{MaxAge: c.retainAge, MaxCount: c.retainCount}); d.ReadOnly() == "" {
		wg.Go(func() { changes.RunRetention(runCtx, r, c.retainInterval, tailer.Last, log) })
	} else if r.Enabled() {
		log.Warn("retention is off: the database is served read-only")
	}
	wg.Go(func() {
		followMemoryLimit(runCtx, c.memoryBudget, func() int { return hub.Stats().Connections })
	})
	wg.Go(func() { pub.run(runCtx) }) // scale-out hook
	hupActions := []func(){reloadRules(c.security.rulesPath, liveRules, schema, log)}
	var served net.Listener = ln
	scheme := "http://"
	if cert != nil {
		served, scheme = serveTLS(ln, cert), "https://"
		hupActions = append(hupActions, reloadCertificate(cert, log))
	}
	hup := notifyHUP()
	wg.Go(func() { onHUP(runCtx, hup, log, hupActions...) })
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(served) })

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

	log.Debug("accepting", "addr", ln.Addr().String(), "max_conns", ln.MaxConns())
	url := scheme + ln.Addr().String()
	fmt.Fprintf(stdout, "sqlws listening on %s\n", url)
	// Exactly one line on stdout (scripts wait for it); the hint goes to stderr.
	fmt.Fprintf(os.Stderr, "open %s in a browser, then try:\n  %s\n", url, tryCommand(d.Path(), schema))

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
	case runErr = <-tailErr:
		if errors.Is(runErr, store.ErrNotInstalled) {
			// Serving on would leave subscribers on a stream that silently stopped and
			// REST writes uncaptured: shut down as for SIGTERM (clients get 1001), but
			// fail, so a supervisor or operator notices.
			runErr = fmt.Errorf("sqlws's tables were removed from %s while it was being served (sqlws uninstall or migrate down with --force); shutting down; start sqlws serve again to reinstall", d.Path())
			log.Error(runErr.Error())
		}
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
func tryCommand(path string, schema *capture.Schema) string {
	if schema.Tracked("todos") {
		return fmt.Sprintf(`sqlite3 %s "INSERT INTO todos(title) VALUES ('hello from the shell')"`, shellQuote(path))
	}
	return fmt.Sprintf("sqlite3 %s   # then INSERT, UPDATE or DELETE a row", shellQuote(path))
}

func shellQuote(s string) string {
	if strings.ContainsAny(s, " '\"$`\\") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

// adminFlags are the flags of the commands other than serve.
type adminFlags struct {
	db    string
	force bool   // uninstall, migrate down
	table string // capture
	print bool   // capture
}

func parseAdmin(name string, args []string, force, table bool) (adminFlags, error) {
	var a adminFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&a.db, "db", "", "SQLite database file")
	if force {
		fs.BoolVar(&a.force, "force", false, "proceed even while a sqlws server serves the file (it then shuts down)")
	}
	if table {
		fs.StringVar(&a.table, "table", "", "the table whose capture to pause or resume")
		fs.BoolVar(&a.print, "print", false, "print the SQL (for a migration) instead of running it")
	}
	if err := fs.Parse(args); err != nil {
		return a, err
	}
	if a.db == "" {
		return a, fmt.Errorf("--db is required")
	}
	if fs.NArg() > 0 {
		return a, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if table && a.table == "" {
		return a, fmt.Errorf("--table is required")
	}
	return a, nil
}

// openExclusive opens the database for a command that removes sqlws's objects:
// while a server serves the file (it holds store.LockServe) it refuses, unless force.
func openExclusive(ctx context.Context, a adminFlags) (*store.DB, error) {
	d, err := store.Open(ctx, a.db, store.Options{Lock: store.LockAdmin})
	if !errors.Is(err, store.ErrServed) {
		return d, err
	}
	if !a.force {
		return nil, fmt.Errorf("%w: stop that server first, or run again with --force to proceed anyway (the server then finds its tables gone, closes its clients' connections and exits with an error)", err)
	}
	fmt.Fprintf(os.Stderr, "sqlws: %v; proceeding because of --force\n", err)
	return store.Open(ctx, a.db, store.Options{})
}

func migrate(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sqlws migrate status|up|down --db PATH")
	}
	verb := args[0]
	switch verb {
	case "up", "down", "status":
	default:
		return fmt.Errorf("unknown migrate command %q (want status, up or down)", verb)
	}
	a, err := parseAdmin("migrate "+verb, args[1:], verb == "down", false)
	if err != nil {
		return err
	}
	var d *store.DB
	if verb == "down" {
		d, err = openExclusive(ctx, a)
	} else {
		d, err = store.Open(ctx, a.db, store.Options{})
	}
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
	}
	return nil
}

func uninstall(ctx context.Context, args []string, out io.Writer) error {
	a, err := parseAdmin("uninstall", args, true, false)
	if err != nil {
		return err
	}
	d, err := openExclusive(ctx, a)
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

// captureCommand runs `sqlws capture pause|resume`: see docs/operations.md, "Changing a
// captured table's schema". Both are meant to run beside a running server, so they
// take no lock.
func captureCommand(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || (args[0] != "pause" && args[0] != "resume") {
		return fmt.Errorf("usage: sqlws capture pause|resume --db PATH --table T [--print]")
	}
	verb := args[0]
	a, err := parseAdmin("capture "+verb, args[1:], false, true)
	if err != nil {
		return err
	}
	if _, err := os.Stat(a.db); os.IsNotExist(err) {
		return fmt.Errorf("%s: no such database file", a.db) // Open would create one
	}
	// --print reads only: it must not even switch the file to WAL mode.
	d, err := store.Open(ctx, a.db, store.Options{ReadOnly: a.print})
	if err != nil {
		return err
	}
	defer d.Close()
	if a.print {
		var sqlText string
		if verb == "pause" {
			sqlText, err = capture.PauseSQL(ctx, d, a.table)
		} else {
			sqlText, err = capture.ResumeSQL(ctx, d, a.table)
		}
		if err != nil {
			return err
		}
		_, err = io.WriteString(out, sqlText)
		return err
	}
	if verb == "pause" {
		paused, err := capture.Pause(ctx, d, a.table)
		if err != nil {
			return err
		}
		if !paused {
			fmt.Fprintf(out, "capture of %s was already paused\n", a.table)
			return nil
		}
		fmt.Fprintf(out, "capture of %s paused: writes to it fail until sqlws capture resume --db %s --table %s\n",
			a.table, shellQuote(a.db), shellQuote(a.table))
		return nil
	}
	res, err := capture.Resume(ctx, d, a.table)
	if err != nil {
		return err
	}
	if res.Dropped {
		fmt.Fprintf(out, "table %s no longer exists; its pause was cleared\n", a.table)
		return nil
	}
	fmt.Fprintf(out, "capture of %s resumed with columns %s\n", a.table, strings.Join(res.Columns, ", "))
	return nil
}
