package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"time"
)

// The W6 REST client runs in its own process. In the load generator's process it
// would share a Go scheduler with the thousand WebSocket readers, and the latency
// measured would be mostly its wait for a turn behind them, not the server's.

// restChildResult is what `sqlws-bench rest` prints as JSON.
type restChildResult struct {
	Latencies []int64 `json:"latencies_us"`
	Rows      int64   `json:"rows"`
	LastSeq   int64   `json:"last_seq"`
	SeqErrs   int64   `json:"seq_errs"`
}

// benchRest is the hidden `sqlws-bench rest` child: restPhase, results on out.
func benchRest(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("sqlws-bench rest", flag.ContinueOnError)
	url := fs.String("url", "", "rows URL to POST to")
	d := fs.Duration("duration", 10*time.Second, "how long to post")
	rate := fs.Float64("rate", 100, "posts per second")
	payload := fs.Int("payload", 200, "payload bytes per row")
	after := fs.Int64("after", 0, "seq before the first post")
	if err := fs.Parse(args); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var lats []int64
	res, err := restPhaseRecord(ctx, hc, *url, *d, *rate, strings.Repeat("x", *payload), *after, &lats)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(restChildResult{Latencies: lats, Rows: res.rows, LastSeq: res.lastSeq, SeqErrs: res.seqErrs})
}

// runRestChild runs restPhase in a child process and rebuilds its result.
func runRestChild(ctx context.Context, exe, url string, d time.Duration, rate float64, payload int, after int64) (restResult, error) {
	cmd := exec.CommandContext(ctx, exe, "rest", "--url", url, "--duration", d.String(),
		"--rate", fmt.Sprint(rate), "--payload", fmt.Sprint(payload), "--after", fmt.Sprint(after))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		return restResult{}, fmt.Errorf("bench rest child: %w: %s", err, stderr.String())
	}
	var cr restChildResult
	if err := json.Unmarshal(outb, &cr); err != nil {
		return restResult{}, fmt.Errorf("bench rest child output: %w", err)
	}
	res := restResult{rows: cr.Rows, lastSeq: cr.LastSeq, seqErrs: cr.SeqErrs}
	for _, l := range cr.Latencies {
		res.lat.add(l)
	}
	return res, nil
}
