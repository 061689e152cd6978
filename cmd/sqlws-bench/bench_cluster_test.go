package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlws/sqlws/internal/testenv"
)

// TestMain lets this test binary stand in for sqlws-bench's own helper processes: the
// scenarios re-execute their binary as `writer` (and `rest`, `refserver`), which under
// `go test` is this one.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "writer", "rest", "refserver":
			main()
			os.Exit(0)
		}
	}
	testenv.Main(m)
}

// TestW8Short runs the scale-out scenario as `sqlws-bench --scenarios W8` would, small:
// a real nats-server, source and two edges as processes, 50 subscribers, 5 s at 100
// changes/s and 3,000 rows flat out. Its checks (every subscriber got every change
// once and in order, each edge's lag back at 0 with JetStream at the head, a clean
// stop) must pass and every figure must have been measured.
func TestW8Short(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and runs for about 10 s")
	}
	jsonPath := filepath.Join(t.TempDir(), "w8.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := bench(ctx, []string{"--scenarios", "W8", "--subs", "50", "--w8-steady", "5s", "--w8-rows", "3000",
		"--sqlws", testenv.Binary(t), "--nats-server", testenv.NATSServerBinary(t), "--json", jsonPath}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 1 || rep.Scenarios[0].Status != "PASS" || len(rep.Scenarios[0].Runs) != 1 {
		t.Fatalf("want one passing W8 run:\n%s", out.String())
	}
	run := rep.Scenarios[0].Runs[0]
	labels := map[string]bool{}
	var subs *verdict
	for _, c := range run.Checks {
		if !c.OK {
			t.Errorf("check %s failed: %s", c.Label, c.Detail)
		}
		labels[c.Label] = true
		if c.Label == "subscribers (both edges)" {
			subs = c.Verdict
		}
	}
	for _, want := range []string{"subscribers (both edges)", "edge1 lag", "edge2 lag", "cluster stop"} {
		if !labels[want] {
			t.Errorf("no %q check:\n%s", want, out.String())
		}
	}
	for _, m := range run.Metrics {
		if !(m.Value > 0) {
			t.Errorf("%s = %v, want a measurement", m.Name, m.Value)
		}
	}
	paced, flat := run.Writers["paced"].Rows, run.Writers["flat_out"].Rows
	if paced < 400 || flat != 3000 || subs == nil || subs.Subscribers != 50 || subs.Expected != 50*(paced+flat) {
		t.Errorf("verdict %+v, writers %d and %d rows: want 50 subscribers × every row of both", subs, paced, flat)
	}
	if !strings.Contains(out.String(), "| W8 | delivered changes/s, flat out, both edges |") {
		t.Errorf("summary table lacks W8:\n%s", out.String())
	}
}
