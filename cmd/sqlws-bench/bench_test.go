package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/models"
)

func verdictOf(base, end int64, seqs ...int64) verdict {
	v := newSeqVerifier(base)
	for _, s := range seqs {
		v.observe(s)
	}
	return v.judge(end)
}

func TestVerifier(t *testing.T) {
	cases := []struct {
		name                    string
		base, end               int64
		seqs                    []int64
		lost, dup, ooo, unexpct int64
	}{
		{"exact", 10, 15, []int64{11, 12, 13, 14, 15}, 0, 0, 0, 0},
		{"nothing expected", 10, 10, nil, 0, 0, 0, 0},
		{"gap never filled", 0, 5, []int64{1, 2, 4, 5}, 1, 0, 0, 0},
		{"tail lost", 0, 5, []int64{1, 2, 3}, 2, 0, 0, 0},
		{"all lost", 0, 3, nil, 3, 0, 0, 0},
		{"duplicate", 0, 3, []int64{1, 2, 2, 3}, 0, 1, 0, 0},
		{"duplicate after gap fill", 0, 3, []int64{1, 3, 2, 3}, 0, 1, 1, 0},
		{"out of order", 0, 4, []int64{1, 3, 2, 4}, 0, 0, 1, 0},
		{"reversed", 0, 3, []int64{3, 2, 1}, 0, 0, 2, 0},
		{"before since", 5, 7, []int64{5, 6, 7}, 0, 0, 0, 1},
		{"after head", 0, 2, []int64{1, 2, 3}, 0, 0, 0, 1},
		{"across bitset words", 0, 200, seqRange(1, 200), 0, 0, 0, 0},
		{"gap in second word", 100, 300, append(seqRange(101, 170), seqRange(172, 300)...), 1, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := verdictOf(c.base, c.end, c.seqs...)
			if v.Lost != c.lost || v.Duplicated != c.dup || v.OutOfOrder != c.ooo || v.Unexpected != c.unexpct {
				t.Fatalf("lost %d dup %d ooo %d unexpected %d, want %d %d %d %d",
					v.Lost, v.Duplicated, v.OutOfOrder, v.Unexpected, c.lost, c.dup, c.ooo, c.unexpct)
			}
			wantOK := c.lost+c.dup+c.ooo+c.unexpct == 0
			if v.ok() != wantOK {
				t.Fatalf("ok() = %v, want %v (%s)", v.ok(), wantOK, v)
			}
			if !wantOK && (v.BadSubs != 1 || v.FirstProblem == "") {
				t.Fatalf("a bad stream must name itself: %+v", v)
			}
		})
	}
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestVerdictAddAndDisconnect(t *testing.T) {
	var total verdict
	total.add(verdictOf(0, 3, 1, 2, 3))
	total.add(verdictOf(0, 3, 1, 3))
	if total.ok() || total.Lost != 1 || total.BadSubs != 1 || total.Subscribers != 2 || total.Expected != 6 {
		t.Fatalf("sum: %+v", total)
	}
	// A subscriber the server dropped fails the run even if it got everything.
	c := &wsClient{ver: newSeqVerifier(0)}
	for s := int64(1); s <= 3; s++ {
		c.ver.observe(s)
	}
	c.setProblem("disconnected: EOF")
	rep := collect([]*wsClient{c}, 3)
	if rep.verdict.ok() || rep.verdict.Disconnected != 1 || !strings.Contains(rep.verdict.String(), "FAIL") {
		t.Fatalf("disconnect not reported: %s", rep.verdict)
	}
}

// frame builds a changes frame the way the server does.
func frame(seqs ...int64) []byte {
	var es []models.Encoded
	for _, s := range seqs {
		row := fmt.Sprintf(`{"id":%d,"bench_ns":%d,"payload":"x\"{\\\"seq\\\":9}"}`, s, 1_000_000_000+s)
		es = append(es, models.Encoded{Seq: s, JSON: models.AppendChange(nil, s, benchTable, "insert", []byte(fmt.Sprintf(`{"id":%d}`, s)), nil, []byte(row), 1700000000000)})
	}
	b := []byte(`{"type":"changes","id":"b","changes":[`)
	for i, e := range es {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.JSON...)
	}
	return append(b, "]}"...)
}

func TestScanChangesMatchesJSON(t *testing.T) {
	f := frame(7, 8, 9, 12)
	var got [][2]int64
	n, err := scanChanges(f, []byte(`"bench_ns":`), func(seq, stamp int64) { got = append(got, [2]int64{seq, stamp}) })
	if err != nil || n != 4 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	var full struct {
		Changes []models.Change `json:"changes"`
	}
	if err := json.Unmarshal(f, &full); err != nil {
		t.Fatalf("frame is not JSON: %v\n%s", err, f)
	}
	for i, c := range full.Changes {
		var row struct {
			Stamp int64 `json:"bench_ns"`
		}
		json.Unmarshal(c.New, &row)
		if got[i] != [2]int64{c.Seq, row.Stamp} {
			t.Fatalf("record %d: scanned %v, encoding/json says seq %d stamp %d", i, got[i], c.Seq, row.Stamp)
		}
	}
	// A record without the stamp column reports -1 rather than borrowing the next one's.
	f2 := []byte(`{"type":"changes","id":1,"changes":[{"seq":1,"table":"t","op":"delete","pk":{"id":1},"old":{"id":1},"new":null,"ts":1},` +
		`{"seq":2,"table":"t","op":"insert","pk":{"id":2},"old":null,"new":{"id":2,"bench_ns":55},"ts":1}]}`)
	got = nil
	scanChanges(f2, []byte(`"bench_ns":`), func(seq, stamp int64) { got = append(got, [2]int64{seq, stamp}) })
	if len(got) != 2 || got[0] != [2]int64{1, -1} || got[1] != [2]int64{2, 55} {
		t.Fatalf("got %v", got)
	}
	if _, err := scanChanges([]byte(`{"type":"changes"}`), nil, func(int64, int64) {}); err == nil {
		t.Fatal("a changes frame without changes must be an error")
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h latHist
	for v := int64(1); v <= 100_000; v++ { // 1 µs .. 100 ms, uniform
		h.add(v)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 100_000
		got := float64(h.quantile(q))
		if got < want*0.96 || got > want*1.04 {
			t.Errorf("q%v = %v, want %v ± 4%%", q, got, want)
		}
	}
	if h.quantile(1) != 100_000 {
		t.Errorf("max = %d", h.quantile(1))
	}
	for v := int64(0); v < 1<<40; v = v*2 + 1 { // bucket lower bounds are monotonic
		if histBucket(v) > histBucket(v+1) || histValue(histBucket(v)) > v*105/100+1 {
			t.Fatalf("bucket of %d: %d (value %d)", v, histBucket(v), histValue(histBucket(v)))
		}
	}
}

func TestMedianAndSummarize(t *testing.T) {
	if median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Fatal("median")
	}
	pass := runResult{Metrics: []metric{{Name: "x", Value: 10, Cmp: "<=", Target: 25}}}
	miss := runResult{Metrics: []metric{{Name: "x", Value: 30, Cmp: "<=", Target: 25}}}
	if _, s := summarize([]runResult{pass, miss, pass}); s != "PASS" {
		t.Fatalf("median of 10,30,10 vs ≤25: %s", s)
	}
	if _, s := summarize([]runResult{miss, miss, pass}); s != "MISS" {
		t.Fatalf("median 30: %s", s)
	}
	bad := pass
	bad.Checks = []check{{Label: "subscribers", OK: false}}
	if _, s := summarize([]runResult{pass, bad}); s != "FAIL" {
		t.Fatalf("a run that lost changes must fail the scenario: %s", s)
	}
}

// BenchmarkScanChanges measures the load generator's per-change decoding cost, which
// W2 pays once per delivered change.
func BenchmarkScanChanges(b *testing.B) {
	seqs := seqRange(1, 1000)
	f := frame(seqs...)
	key := []byte(`"bench_ns":`)
	v := newSeqVerifier(0)
	var h latHist
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		v = newSeqVerifier(0)
		scanChanges(f, key, func(seq, stamp int64) { v.observe(seq); h.add(stamp / 1000) })
	}
	b.ReportMetric(float64(b.N*len(seqs))/b.Elapsed().Seconds(), "changes/s")
}

// BenchmarkUnmarshalChanges is the cost scanChanges avoids: decoding every change.
func BenchmarkUnmarshalChanges(b *testing.B) {
	f := frame(seqRange(1, 1000)...)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		var full struct {
			Changes []models.Change `json:"changes"`
		}
		if err := json.Unmarshal(f, &full); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "changes/s")
}
