package fanout

import (
	"fmt"
	"math"
	"testing"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

func enc(seq int64, table string) models.Encoded {
	return models.Encoded{Seq: seq, Table: table, JSON: models.AppendChange(nil, seq, table, "insert", []byte(`{"id":1}`), nil, []byte(`{"id":1}`), 1)}
}

func TestWindowEvictsByCountAndBytes(t *testing.T) {
	w := NewWindow(nil, 10, Options{WindowChanges: 5, WindowBytes: 1 << 20})
	for s := int64(11); s <= 30; s++ {
		w.Publish([]models.Encoded{enc(s, "t")})
		st := w.Stats()
		if st.Head != s || st.Len != min(int(s-10), 5) || st.First != st.Head-int64(st.Len)+1 {
			t.Fatalf("after %d: %+v", s, st)
		}
	}
	// A cursor before the window goes to history; inside reads exactly what follows.
	if _, _, behind := w.read(nil, 20, nil, math.MaxInt64, 0); !behind {
		t.Fatalf("cursor 20 with window 26..30 is not behind")
	}
	got, cur, behind := w.read(nil, 27, nil, math.MaxInt64, 0)
	if behind || cur != 30 || len(got) != 3 || got[0].Seq != 28 {
		t.Fatalf("read after 27: %d entries cursor %d behind %v", len(got), cur, behind)
	}

	one := len(enc(1, "t").JSON)
	w = NewWindow(nil, 0, Options{WindowChanges: 1000, WindowBytes: 3 * one})
	w.Publish([]models.Encoded{enc(1, "t"), enc(2, "t"), enc(3, "t"), enc(4, "t")})
	if st := w.Stats(); st.First != 2 || st.Len != 3 || st.Bytes != 3*one {
		t.Fatalf("byte bound: %+v", st)
	}
}

func TestWindowFilterSkipsAndGapRestarts(t *testing.T) {
	w := NewWindow(nil, 0, Options{})
	w.Publish([]models.Encoded{enc(1, "a"), enc(2, "b"), enc(3, "a"), enc(4, "b")})
	got, cur, _ := w.read(nil, 0, NewTableSet([]string{"b"}), math.MaxInt64, 0)
	if len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 4 || cur != 4 {
		t.Fatalf("filtered read: %v cursor %d", got, cur)
	}
	got, cur, _ = w.read(nil, 0, NewTableSet([]string{"b", "c", "b"}), math.MaxInt64, 0)
	if len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 4 || cur != 4 {
		t.Fatalf("read filtered by two tables: %v cursor %d", got, cur)
	}
	// A limit stops the read there.
	got, cur, _ = w.read(nil, 0, nil, 2, 0)
	if len(got) != 2 || cur != 2 {
		t.Fatalf("read limited to 2: %v cursor %d", got, cur)
	}
	// Duplicates are ignored; a jump restarts the window at the new seq.
	w.Publish([]models.Encoded{enc(3, "a"), enc(10, "a")})
	if st := w.Stats(); st.First != 10 || st.Head != 10 || st.Len != 1 {
		t.Fatalf("after jump: %+v", st)
	}
	if _, _, behind := w.read(nil, 4, nil, math.MaxInt64, 0); !behind {
		t.Fatal("a cursor before a jump must read history, where the gap is detected")
	}
}

func TestFrameLimits(t *testing.T) {
	w := NewWindow(nil, 0, Options{FrameChanges: 3})
	var b []models.Encoded
	for s := int64(1); s <= 10; s++ {
		b = append(b, enc(s, "t"))
	}
	w.Publish(b)
	c := w.NewCursor(nil, 0)
	got, st := w.Next(c, nil, 0)
	if st != Ready || len(got) != 3 || c.Pos() != 3 {
		t.Fatalf("frame of %d, cursor %d, status %v", len(got), c.Pos(), st)
	}
}

// TestDropEndsCursorsNamingTheTable: a cursor naming a dropped table reads up to
// the drop and then reports Dropped; one over every table, or started after the
// drop, goes on.
func TestDropEndsCursorsNamingTheTable(t *testing.T) {
	w := NewWindow(nil, 0, Options{})
	w.Publish([]models.Encoded{enc(1, "t"), enc(2, "u"), enc(3, "t")})
	named, all := w.NewCursor([]string{"t"}, 0), w.NewCursor(nil, 0)
	w.TableDropped([]models.Drop{{Table: "t", Seq: 2}})
	w.Publish([]models.Encoded{enc(4, "t")})
	if got, st := w.Next(named, nil, 0); st != Ready || len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("before the drop: %v %v", got, st)
	}
	if _, st := w.Next(named, nil, 0); st != Dropped || named.DroppedTable() != "t" {
		t.Fatalf("at the drop: %v, want Dropped", st)
	}
	if got, st := w.Next(all, nil, 0); st != Ready || len(got) != 4 {
		t.Fatalf("every table: %v %v", got, st)
	}
	// Started after the drop (from its seq on): the new table.
	later := w.NewCursor([]string{"t"}, 2)
	if got, st := w.Next(later, nil, 0); st != Ready || len(got) != 2 || got[0].Seq != 3 {
		t.Fatalf("after the drop: %v %v", got, st)
	}
	// Started before the drop, knowing of it: resumes the old table's history.
	early := w.NewCursor([]string{"t"}, 0)
	w.Next(early, nil, 0)
	if _, st := w.Next(early, nil, 0); st != Dropped {
		t.Fatalf("replay across the drop: %v, want Dropped", st)
	}
}

// TestFanOutAllocations guards the hot path: once warm, publishing a change and
// building every subscriber's frame allocates nothing per delivered change — changes
// are encoded once and frames reuse their buffers.
func TestFanOutAllocations(t *testing.T) {
	w := NewWindow(nil, 0, Options{WindowChanges: 4096})
	const subs = 100
	batch := make([]models.Encoded, 16)
	cursors := make([]*Cursor, subs)
	for i := range cursors {
		cursors[i] = w.NewCursor([]string{"t"}, 0)
	}
	var scratch []models.Encoded
	buf := make([]byte, 0, 64<<10)
	id := []byte(`"s"`)
	seq := int64(0)
	step := func() {
		for i := range batch {
			seq++
			batch[i] = models.Encoded{Seq: seq, Table: "t", JSON: batch[i].JSON}
		}
		w.Publish(batch)
		for _, c := range cursors {
			scratch, _ = w.Next(c, scratch[:0], 0)
			buf = protocol.AppendChanges(buf[:0], id, scratch)
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
			w := NewWindow(nil, 0, Options{})
			batch := make([]models.Encoded, 64)
			for i := range batch {
				batch[i] = enc(1, "t")
				batch[i].JSON = append(batch[i].JSON, make([]byte, 200)...)[:len(batch[i].JSON)]
			}
			cursors := make([]*Cursor, subs)
			for i := range cursors {
				cursors[i] = w.NewCursor(nil, 0)
			}
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
				w.Publish(batch)
				for _, c := range cursors {
					scratch, _ = w.Next(c, scratch[:0], 0)
					buf = protocol.AppendChanges(buf[:0], []byte(`1`), scratch)
				}
			}
			b.ReportMetric(float64(b.N*len(batch)*subs)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// Filling the window grows its array a logarithmic number of times, not per push.
func TestWindowGrowsAmortized(t *testing.T) {
	w := NewWindow(nil, 0, Options{WindowChanges: 100_000})
	e := enc(1, "t")
	allocs := testing.AllocsPerRun(1, func() {
		for s := int64(1); s <= 50_000; s++ {
			e.Seq = s
			w.Publish([]models.Encoded{e})
		}
	})
	if allocs > 20 {
		t.Fatalf("%v allocations to publish 50,000 changes", allocs)
	}
	if st := w.Stats(); st.First != 1 || st.Head != 50_000 || st.Len != 50_000 {
		t.Fatalf("window %+v", st)
	}
}
