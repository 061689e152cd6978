package fanout

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/filter"
	"github.com/sqlws/sqlws/models"
)

var devices = &capture.Table{Table: models.Table{Name: "readings", PrimaryKey: []string{"id"}, Columns: []models.Column{
	{Name: "id", Type: "INTEGER", PK: 1}, {Name: "device", Type: "TEXT"}, {Name: "v", Type: "REAL"}},
	Collations: map[string]string{}}}

func reading(seq int64, op string, id int, oldDev, newDev string) models.Encoded {
	img := func(dev string) []byte {
		if dev == "" {
			return nil
		}
		return fmt.Appendf(nil, `{"id":%d,"device":%q,"v":1.5}`, id, dev)
	}
	return models.Encoded{Seq: seq, Table: "readings", JSON: models.AppendChange(nil, seq, "readings", op,
		fmt.Appendf(nil, `{"id":%d}`, id), img(oldDev), img(newDev), 1)}
}

func mustFilter(t testing.TB, where, sel string) *filter.Filter {
	t.Helper()
	f, err := filter.Compile(devices, where, sel, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// drain reads everything c has now.
func drain(t testing.TB, w *Window, c *Cursor) []models.Encoded {
	t.Helper()
	var out []models.Encoded
	for range 1000 {
		got, st := w.Next(c, nil, 0)
		if st != Ready {
			t.Fatalf("status %d", st)
		}
		if len(got) == 0 {
			return out
		}
		out = append(out, got...)
	}
	t.Fatal("cursor never caught up")
	return nil
}

// TestFilterGroupsShareAndIndex: subscriptions with one filter share one group; an
// equality filter is found through the index; a cursor that starts before its group
// evaluates for itself and gets the same records; moved records come out of both.
func TestFilterGroupsShareAndIndex(t *testing.T) {
	w := NewWindow(nil, 0, Options{})
	w.Publish([]models.Encoded{reading(1, "insert", 1, "", "a"), reading(2, "insert", 2, "", "b")})
	wakes := map[string]int{}
	wake := func(name string) func() { return func() { wakes[name]++ } }
	early := w.NewFilteredCursor(mustFilter(t, "device=eq.a", ""), 0, wake("early"))
	live := w.NewFilteredCursor(mustFilter(t, "device=eq.a", ""), 2, wake("live"))
	other := w.NewFilteredCursor(mustFilter(t, "device=eq.b", "id"), 2, wake("other"))
	third := w.NewFilteredCursor(mustFilter(t, "device=eq.z", ""), 2, wake("third"))
	if len(w.filters.byKey) != 3 || w.filters.byKey[early.filter.Key()].refs != 2 {
		t.Fatalf("groups: %d, refs of a's: %d", len(w.filters.byKey), w.filters.byKey[early.filter.Key()].refs)
	}
	if tg := w.filters.byTable["readings"]; len(tg.scan) != 0 || len(tg.eq["device"]) != 3 {
		t.Fatalf("equality filters not indexed: scan %d, eq %v", len(tg.scan), tg.eq)
	}
	w.Publish([]models.Encoded{
		reading(3, "update", 2, "b", "a"), // b → a: out of b's, into a's
		reading(4, "insert", 3, "", "c"),
		reading(5, "delete", 1, "a", ""),
	})
	if got := w.filters.byKey[early.filter.Key()].entries; len(got) != 2 {
		t.Fatalf("a's group holds %d records, want 2", len(got))
	}
	// Each publish wakes the cursors of the groups it gave something, once each, and
	// no other: z's cursor was never concerned.
	if wakes["early"] != 1 || wakes["live"] != 1 || wakes["other"] != 1 || wakes["third"] != 0 {
		t.Fatalf("wake-ups: %v", wakes)
	}
	e := drain(t, w, early)
	l := drain(t, w, live)
	o := drain(t, w, other)
	if fmt.Sprint(seqsOf(e)) != "[1 3 5]" || fmt.Sprint(seqsOf(l)) != "[3 5]" || fmt.Sprint(seqsOf(o)) != "[3]" {
		t.Fatalf("early %v, live %v, other %v", seqsOf(e), seqsOf(l), seqsOf(o))
	}
	if string(e[1].JSON) != string(l[0].JSON) || !contains(l[0].JSON, `"moved":"in","pk":{"id":2},"old":null,`) {
		t.Fatalf("moved in: early %s, live %s", e[1].JSON, l[0].JSON)
	}
	if !contains(o[0].JSON, `"moved":"out","pk":{"id":2},"old":{"id":2},"new":null`) {
		t.Fatalf("moved out with select id: %s", o[0].JSON)
	}
	w.CloseCursor(early)
	w.CloseCursor(live)
	w.CloseCursor(other)
	w.CloseCursor(third)
	if len(w.filters.byKey) != 0 || len(w.filters.byTable) != 0 {
		t.Fatalf("groups left after every cursor closed: %v", w.filters.byKey)
	}
}

func seqsOf(es []models.Encoded) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// BenchmarkPublishIndexed: publishing a change costs about the same with 10,000
// subscriptions each on its own device=eq.X as with 10: the change reaches its one
// group through the index.
func BenchmarkPublishIndexed(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			w := NewWindow(nil, 0, Options{})
			for i := range n {
				w.NewFilteredCursor(mustFilter(b, "device=eq.d"+strconv.Itoa(i), ""), 0, nil)
			}
			batch := make([]models.Encoded, 1)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				batch[0] = reading(int64(i+1), "insert", i, "", "d"+strconv.Itoa(i%n))
				w.Publish(batch)
			}
		})
	}
}

// TestStaleGroupReplaced: a subscription starting after its filter's group went
// stale gets a group of its own (and its records), while the stale group's cursor
// ends with Invalid.
func TestStaleGroupReplaced(t *testing.T) {
	w := NewWindow(nil, 0, Options{})
	old := w.NewFilteredCursor(mustFilter(t, "device=eq.a", ""), 0, nil)
	// A row without the device column: the group goes stale.
	w.Publish([]models.Encoded{{Seq: 1, Table: "readings", JSON: models.AppendChange(nil, 1, "readings", "insert",
		[]byte(`{"id":1}`), nil, []byte(`{"id":1,"v":1.5}`), 1)}})
	if _, st := w.Next(old, nil, 0); st != Invalid {
		t.Fatalf("old cursor: status %d, want Invalid", st)
	}
	fresh := w.NewFilteredCursor(mustFilter(t, "device=eq.a", ""), 1, nil)
	if fresh.group == old.group {
		t.Fatal("the new subscription joined the stale group")
	}
	w.Publish([]models.Encoded{reading(2, "insert", 2, "", "a")})
	if got := drain(t, w, fresh); len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("fresh cursor got %v", seqsOf(got))
	}
	w.CloseCursor(old)
	if w.filters.byKey[fresh.filter.Key()] != fresh.group {
		t.Fatal("closing the stale group's last cursor removed the fresh group")
	}
	w.CloseCursor(fresh)
	if len(w.filters.byKey) != 0 || len(w.filters.byTable) != 0 {
		t.Fatalf("groups left: %v", w.filters.byKey)
	}
}
