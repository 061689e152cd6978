package main

// `sqlws tail`: a server's change feed in a terminal, one JSON record per line,
// through the Go client (package client), so that it survives server restarts
// without a gap or a repeat:
//
//	sqlws tail --db-url ws://127.0.0.1:8080/ws --table todos | jq

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sqlws/sqlws/client"
	"github.com/sqlws/sqlws/protocol"
)

// tailList is a repeatable flag whose values may also be comma-separated.
type tailList []string

func (l *tailList) String() string { return strings.Join(*l, ",") }

func (l *tailList) Set(v string) error {
	*l = append(*l, splitList(v)...)
	return nil
}

// tailHeaders is a repeatable "Name: value" flag.
type tailHeaders http.Header

func (h tailHeaders) String() string { return "" }

func (h tailHeaders) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if name = strings.TrimSpace(name); !ok || name == "" {
		return fmt.Errorf("want Name: value, got %q", v)
	}
	http.Header(h).Add(name, strings.TrimSpace(value))
	return nil
}

// runTail is `sqlws tail`. It returns nil when ctx ends (SIGINT, SIGTERM), and an
// error, which main prints before exiting 1, when the feed cannot continue.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: sqlws tail --db-url URL [--table T ...] [--since N] [--where FILTER] [--select COLS]

Prints every change of a sqlws server as one JSON line (the record exactly as the
server sends it) on stdout, resuming across server restarts without a gap or a
repeat. Exits 0 on SIGINT or SIGTERM; exits 1 with a message on stderr when the feed
cannot continue (reset, unknown table).

`)
		fs.PrintDefaults()
	}
	dbURL := fs.String("db-url", "ws://127.0.0.1:8080/ws", "the server's WebSocket endpoint (ws:// or wss://), or its http(s):// root URL")
	var tables tailList
	fs.Var(&tables, "table", "follow only `TABLE`; repeat the flag or separate names with commas (default: every table, including new ones)")
	since := fs.Int64("since", -1, "first print every change after this `seq`; -1: only changes from now on")
	where := fs.String("where", "", "row filter, passed to the server as the subscription's \"where\"")
	sel := fs.String("select", "", "columns, passed to the server as the subscription's \"select\"")
	headers := tailHeaders{}
	fs.Var(headers, "header", "`Name: value` of an extra handshake header, e.g. Authorization for an authenticating proxy (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see sqlws tail -h)", fs.Arg(0))
	}
	if *since < -1 {
		return fmt.Errorf("--since must be a seq >= 0")
	}

	url, err := client.WebSocketURL(*dbURL)
	if err != nil {
		return err
	}
	var following atomic.Pointer[client.Subscription] // set once subscribed
	opts := &client.Options{
		HTTPHeader: http.Header(headers),
		OnStatus: func(s client.Status) {
			switch {
			case s.State == client.StateReconnecting:
				cause := "connection lost"
				if s.Code == 1001 {
					cause = "server shut down"
				}
				if s.Attempt > 1 {
					cause = "server unreachable"
				}
				fmt.Fprintf(stderr, "sqlws tail: %s (%v); retrying in %v\n", cause, s.Err, s.Delay.Round(time.Millisecond))
			case s.State == client.StateOpen && following.Load() != nil:
				fmt.Fprintf(stderr, "sqlws tail: reconnected; resuming after seq %d\n", following.Load().LastSeq())
			}
		},
	}
	c, err := client.Dial(ctx, url, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return tailError(err, url, *since)
	}
	defer c.Close()
	so := client.SubscribeOptions{Tables: tables, Where: *where, Select: *sel}
	if *since >= 0 {
		so.Since = client.Seq(*since)
	}
	sub, err := c.Subscribe(ctx, so)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return tailError(err, url, *since)
	}
	following.Store(sub)
	h := c.Hello()
	fmt.Fprintf(stderr, "sqlws tail: following %s (stream %s, head %d)\n", url, h.Stream, sub.Head())

	w := bufio.NewWriterSize(stdout, 64<<10)
	var line bytes.Buffer
	for {
		changes, err := sub.Next(ctx)
		if err != nil {
			if ferr := w.Flush(); ferr != nil {
				return ferr
			}
			if ctx.Err() != nil {
				return nil
			}
			return tailError(err, url, sub.LastSeq())
		}
		for _, ch := range changes {
			raw := []byte(ch.Raw)
			if bytes.IndexByte(raw, '\n') >= 0 {
				// Whitespace only (JSON escapes newlines in strings), but a line
				// must stay a line.
				line.Reset()
				json.Compact(&line, raw)
				raw = line.Bytes()
			}
			w.Write(raw)
			w.WriteByte('\n')
		}
		// A batch at a time: catching up stays fast, and each change shows as soon
		// as it arrives once caught up.
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// tailError turns why the feed ended into a message for the person running tail.
func tailError(err error, url string, last int64) error {
	var re *client.ResetError
	var se *client.ServerError
	switch {
	case errors.As(err, &re) && re.Reason == protocol.ResetPruned:
		return fmt.Errorf("reset (pruned): the server's retention has removed changes after seq %d that were not printed yet "+
			"(server head %d); reload your copy of the data and start again with --since set to its seq", last, re.Head)
	case errors.As(err, &re) && re.Reason == protocol.ResetFuture:
		return fmt.Errorf("reset (future): seq %d is beyond the server's head %d: this is a restored or another database; "+
			"reload your copy of the data and start again with --since set to its seq", last, re.Head)
	case errors.As(err, &re):
		return fmt.Errorf("reset (%s): %s now serves another database (stream %s); the changes printed so far came from another stream",
			re.Reason, url, re.Stream)
	case errors.As(err, &se):
		return fmt.Errorf("%s (%s)", se.Message, se.Code)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "sqlws client: ")) // main says "sqlws tail: "
}
