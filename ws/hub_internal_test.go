package ws

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"syscall"
	"testing"

	"github.com/sqlws/sqlws/models"
)

func enc(seq int64, table string) models.Encoded {
	return models.Encoded{Seq: seq, Table: table, JSON: models.AppendChange(nil, seq, table, "insert", []byte(`{"id":1}`), nil, []byte(`{"id":1}`), 1)}
}

func TestWindowEvictsByCountAndBytes(t *testing.T) {
	h := NewHub(nil, 10, Options{WindowChanges: 5, WindowBytes: 1 << 20})
	for s := int64(11); s <= 30; s++ {
		h.Publish([]models.Encoded{enc(s, "t")})
		first, head, n, _ := h.window()
		if head != s || n != min(int(s-10), 5) || first != head-int64(n)+1 {
			t.Fatalf("after %d: first=%d head=%d n=%d", s, first, head, n)
		}
	}
	// A cursor before the window goes to history; inside reads exactly what follows.
	if _, _, res := h.read(nil, 20, nil, math.MaxInt64); res != readHistory {
		t.Fatalf("cursor 20 with window 26..30: %v, want history", res)
	}
	got, cur, res := h.read(nil, 27, nil, math.MaxInt64)
	if res != readOK || cur != 30 || len(got) != 3 || got[0].Seq != 28 {
		t.Fatalf("read after 27: %d entries cursor %d res %v", len(got), cur, res)
	}

	one := len(enc(1, "t").JSON)
	h = NewHub(nil, 0, Options{WindowChanges: 1000, WindowBytes: 3 * one})
	h.Publish([]models.Encoded{enc(1, "t"), enc(2, "t"), enc(3, "t"), enc(4, "t")})
	if first, _, n, b := h.window(); first != 2 || n != 3 || b != 3*one {
		t.Fatalf("byte bound: first=%d n=%d bytes=%d", first, n, b)
	}
}

func TestWindowFilterSkipsAndGapRestarts(t *testing.T) {
	h := NewHub(nil, 0, Options{})
	h.Publish([]models.Encoded{enc(1, "a"), enc(2, "b"), enc(3, "a"), enc(4, "b")})
	got, cur, _ := h.read(nil, 0, newTableFilter([]string{"b"}), math.MaxInt64)
	if len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 4 || cur != 4 {
		t.Fatalf("filtered read: %v cursor %d", got, cur)
	}
	got, cur, _ = h.read(nil, 0, newTableFilter([]string{"b", "c", "b"}), math.MaxInt64)
	if len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 4 || cur != 4 {
		t.Fatalf("read filtered by two tables: %v cursor %d", got, cur)
	}
	// Duplicates are ignored; a jump restarts the window at the new seq.
	h.Publish([]models.Encoded{enc(3, "a"), enc(10, "a")})
	if first, head, n, _ := h.window(); first != 10 || head != 10 || n != 1 {
		t.Fatalf("after jump: first=%d head=%d n=%d", first, head, n)
	}
	if _, _, res := h.read(nil, 4, nil, math.MaxInt64); res != readHistory {
		t.Fatal("a cursor before a jump must read history, where the gap is detected")
	}
}

func TestFrameLimits(t *testing.T) {
	h := NewHub(nil, 0, Options{FrameChanges: 3})
	var b []models.Encoded
	for s := int64(1); s <= 10; s++ {
		b = append(b, enc(s, "t"))
	}
	h.Publish(b)
	got, cur, _ := h.read(nil, 0, nil, math.MaxInt64)
	if len(got) != 3 || cur != 3 {
		t.Fatalf("frame of %d, cursor %d", len(got), cur)
	}
	frame := appendFrame(nil, []byte(`"x"`), got)
	want := `{"type":"changes","id":"x","changes":[` + string(got[0].JSON) + "," + string(got[1].JSON) + "," + string(got[2].JSON) + "]}"
	if string(frame) != want {
		t.Fatalf("frame %s", frame)
	}
}

// TestFanOutAllocations guards the hot path: once warm, publishing a change and
// building every subscriber's frame allocates nothing per delivered change — changes
// are encoded once and frames reuse pooled buffers.
func TestFanOutAllocations(t *testing.T) {
	h := NewHub(nil, 0, Options{WindowChanges: 4096})
	const subs = 100
	batch := make([]models.Encoded, 16)
	cursors := make([]int64, subs)
	var scratch []models.Encoded
	buf := make([]byte, 0, 64<<10)
	id := []byte(`"s"`)
	seq := int64(0)
	step := func() {
		for i := range batch {
			seq++
			batch[i] = models.Encoded{Seq: seq, Table: "t", JSON: batch[i].JSON}
		}
		h.Publish(batch)
		for i := range cursors {
			scratch, cursors[i], _ = h.read(scratch[:0], cursors[i], nil, math.MaxInt64)
			buf = appendFrame(buf[:0], id, scratch)
		}
	}
	for i := range batch {
		batch[i].JSON = enc(1, "t").JSON
	}
	for range 300 { // fill the ring so it stops growing
		step()
	}
	allocs := testing.AllocsPerRun(50, step)
	perDelivery := allocs / float64(len(batch)*subs)
	if perDelivery > 0.01 {
		t.Fatalf("%.3f allocations per delivered change (%.1f per step), want ~0", perDelivery, allocs)
	}
}

func BenchmarkFanOut(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			h := NewHub(nil, 0, Options{})
			batch := make([]models.Encoded, 64)
			for i := range batch {
				batch[i] = enc(1, "t")
				batch[i].JSON = append(batch[i].JSON, make([]byte, 200)...)[:len(batch[i].JSON)]
			}
			cursors := make([]int64, subs)
			var scratch []models.Encoded
			buf := make([]byte, 0, 64<<10)
			seq := int64(0)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range batch {
					seq++
					batch[i].Seq = seq
				}
				h.Publish(batch)
				for i := range cursors {
					scratch, cursors[i], _ = h.read(scratch[:0], cursors[i], nil, math.MaxInt64)
					buf = appendFrame(buf[:0], []byte(`1`), scratch)
				}
			}
			b.ReportMetric(float64(b.N*len(batch)*subs)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// Filling the window grows its array a logarithmic number of times, not per push.
func TestWindowGrowsAmortized(t *testing.T) {
	h := NewHub(nil, 0, Options{WindowChanges: 100_000})
	e := enc(1, "t")
	allocs := testing.AllocsPerRun(1, func() {
		for s := int64(1); s <= 50_000; s++ {
			e.Seq = s
			h.Publish([]models.Encoded{e})
		}
	})
	if allocs > 20 {
		t.Fatalf("%v allocations to publish 50,000 changes", allocs)
	}
	if first, head, n, _ := h.window(); first != 1 || head != 50_000 || n != 50_000 {
		t.Fatalf("window %d..%d n=%d", first, head, n)
	}
}

// The live path end to end, socket write included: a pump delivering a change to a
// subscriber allocates nothing (the regression guard for the fan-out's per-delivery
// cost; a stray allocation per frame shows up here, not as a flaky timing).
func TestPumpDeliversWithoutAllocating(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	received := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, client)
		received <- n
	}()

	fc := &frameConn{Conn: server}
	fc.raw, _ = server.(syscall.Conn).SyscallConn()
	h := NewHub(nil, 0, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &conn{hub: h, fc: fc, ctx: ctx, cancel: cancel, subs: map[string]*subscription{}}
	s := &subscription{id: []byte(`"s"`), key: `"s"`}
	c.subs[s.key], c.order = s, []*subscription{s}

	var batch []models.Encoded
	buf := framePool.Get().(*[]byte)
	e := enc(1, "t")
	seq, frames := int64(0), 0
	step := func() {
		seq++
		e.Seq = seq
		h.Publish([]models.Encoded{e})
		if c.pumpOne(&batch, &buf) {
			frames++
		}
	}
	for range 10 {
		step()
	}
	allocs := testing.AllocsPerRun(200, step)
	if frames != 211 || s.cursor != seq || c.writing {
		t.Fatalf("%d frames written directly for %d changes (cursor %d, writer started %v)", frames, seq, s.cursor, c.writing)
	}
	if allocs > 0.05 {
		t.Fatalf("%.2f allocations per delivered change, want 0", allocs)
	}
	server.Close()
	if n := <-received; n < int64(frames)*int64(len(e.JSON)) {
		t.Fatalf("client received %d bytes for %d frames of a %d-byte change", n, frames, len(e.JSON))
	}
}
