package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// serverFrame builds a changes frame the way the server does (ws/conn.go's
// appendFrame around models.AppendChange).
func serverFrame(id string, recs ...[]byte) []byte {
	b := []byte(`{"type":"changes","id":` + id + `,"changes":[`)
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	return append(b, "]}"...)
}

func record(seq int64, table, op string) []byte {
	switch op {
	case models.OpInsert:
		return models.AppendChange(nil, seq, table, op, []byte(`{"id":7}`), nil,
			[]byte(`{"id":7,"title":"milk \"2%\"","done":0,"price":1.25,"img":{"$blob":"00FF"}}`), 1763771284123)
	case models.OpDelete:
		return models.AppendChange(nil, seq, table, op, []byte(`{"id":7}`),
			[]byte(`{"id":7,"title":"milk","done":1,"price":null}`), nil, 1763771284123)
	}
	return models.AppendChange(nil, seq, table, op, []byte(`{"id":7}`),
		[]byte(`{"id":7,"title":"milk","done":0}`), []byte(`{"id":7,"title":"oat milk","done":1}`), 1763771284123)
}

// reference decodes a frame with encoding/json into what parseFrame should find.
// It reads objects member by member, so that, like parseFrame, it sees every
// occurrence of a repeated key: each must be well-formed, and the last one counts.
type refChange struct {
	seq          int64
	table, op    string
	raw          string
	pk, old, new json.RawMessage
	ts           int64
	tsBad        bool // some ts is neither an integer nor null: Decode must fail
}

type member struct {
	key string
	val json.RawMessage
}

// members lists the members of the JSON object raw, in order; ok is false if raw is
// not an object.
func members(raw []byte) (ms []member, ok bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return nil, false
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, false
		}
		ms = append(ms, member{k.(string), v})
	}
	if tok, err := d.Token(); err != nil || tok != json.Delim('}') {
		return nil, false
	}
	return ms, true
}

func refString(v json.RawMessage) (string, bool) {
	var s string
	return s, len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil
}

func refRecord(r json.RawMessage) (refChange, bool) {
	c := refChange{raw: string(r)}
	ms, ok := members(r)
	if !ok {
		return c, false
	}
	var haveSeq, haveTable, haveOp bool
	for _, m := range ms {
		var ok bool
		switch m.key {
		case "seq":
			var err error
			c.seq, err = strconv.ParseInt(string(m.val), 10, 64)
			ok, haveSeq = err == nil && !bytes.ContainsAny(m.val, "+-.eE"), true
		case "table":
			c.table, ok = refString(m.val)
			haveTable = true
		case "op":
			c.op, ok = refString(m.val)
			haveOp = true
		case "pk":
			c.pk, ok = m.val, true
		case "old":
			c.old, ok = m.val, true
		case "new":
			c.new, ok = m.val, true
		case "ts":
			c.ts, ok = 0, true
			if string(m.val) != "null" {
				n, err := strconv.ParseInt(string(m.val), 10, 64)
				c.ts = n
				c.tsBad = c.tsBad || err != nil || m.val[0] == '+'
			}
		default:
			ok = true
		}
		if !ok {
			return c, false
		}
	}
	return c, haveSeq && haveTable && haveOp
}

func reference(b []byte) (typ string, id string, changes []refChange, hasChanges bool, ok bool) {
	if !json.Valid(b) {
		return "", "", nil, false, false
	}
	ms, ok := members(b)
	if !ok {
		return "", "", nil, false, false
	}
	for _, m := range ms {
		switch m.key {
		case "type":
			if typ, ok = refString(m.val); !ok {
				return "", "", nil, false, false
			}
		case "id":
			id = string(m.val)
		case "changes":
			changes, hasChanges = nil, false
			if m.val[0] != '[' {
				continue
			}
			var recs []json.RawMessage
			if json.Unmarshal(m.val, &recs) != nil {
				return "", "", nil, false, false
			}
			for _, r := range recs {
				c, ok := refRecord(r)
				if !ok {
					return "", "", nil, false, false
				}
				changes = append(changes, c)
			}
			hasChanges = true
		}
	}
	return typ, id, changes, hasChanges, true
}

// checkAgainstReference fails unless parseFrame and encoding/json agree on b.
func checkAgainstReference(t *testing.T, b []byte) {
	t.Helper()
	var in interner
	f, got, err := parseFrame(nil, b, &in)
	rtyp, rid, want, rhas, rok := reference(b)
	if err != nil {
		if rok {
			t.Fatalf("parseFrame(%q) failed (%v) but encoding/json reads it", b, err)
		}
		if len(got) != 0 {
			t.Fatalf("parseFrame(%q) failed but returned %d changes", b, len(got))
		}
		return
	}
	if !json.Valid(b) {
		t.Fatalf("parseFrame accepted invalid JSON %q", b)
	}
	if !rok {
		t.Fatalf("parseFrame accepted %q, which encoding/json does not read as a frame", b)
	}
	if f.typ != messageType(rtyp) || string(f.id) != rid || f.hasChanges != rhas {
		t.Fatalf("parseFrame(%q) = type %q id %s changes %v; encoding/json: %q %s %v", b, f.typ, f.id, f.hasChanges, rtyp, rid, rhas)
	}
	if len(got) != len(want) {
		t.Fatalf("parseFrame(%q): %d changes, encoding/json %d", b, len(got), len(want))
	}
	for i, c := range got {
		w := want[i]
		if c.Seq != w.seq || c.Table != w.table || c.Op != w.op || string(c.Raw) != w.raw {
			t.Fatalf("parseFrame(%q) change %d = %d %q %q %s; encoding/json %d %q %q %s", b, i, c.Seq, c.Table, c.Op, c.Raw, w.seq, w.table, w.op, w.raw)
		}
		if !json.Valid(c.Raw) {
			t.Fatalf("change %d Raw %q is not valid JSON", i, c.Raw)
		}
		m, err := c.Decode()
		if w.tsBad {
			if err == nil {
				t.Fatalf("change %d: Decode(%s) accepted a ts that is not an int64", i, c.Raw)
			}
			continue
		}
		if err != nil {
			t.Fatalf("change %d: Decode(%s): %v", i, c.Raw, err)
		}
		if m.Seq != c.Seq || m.Table != c.Table || m.Op != c.Op || m.TS != w.ts ||
			string(m.PK) != string(w.pk) || string(m.Old) != string(w.old) || string(m.New) != string(w.new) ||
			(m.PK == nil) != (w.pk == nil) || (m.Old == nil) != (w.old == nil) || (m.New == nil) != (w.new == nil) {
			t.Fatalf("change %d: Decode(%s) = %+v; encoding/json reads pk %s old %s new %s ts %d", i, c.Raw, m, w.pk, w.old, w.new, w.ts)
		}
	}
}

func TestParseServerFrames(t *testing.T) {
	ops := []string{models.OpInsert, models.OpUpdate, models.OpDelete}
	for n := 1; n <= 40; n += 13 {
		var recs [][]byte
		for i := range n {
			recs = append(recs, record(int64(100+i), []string{"todos", "odd \"name\"", "ünï", "t\x01"}[i%4], ops[i%3]))
		}
		for _, id := range []string{`"a"`, `7`, `"\u003cx\u003e"`} {
			b := serverFrame(id, recs...)
			checkAgainstReference(t, b)
			var in interner
			f, got, err := parseFrame(nil, b, &in)
			if err != nil || f.typ != protocol.TypeChanges || string(f.id) != id || len(got) != n {
				t.Fatalf("frame of %d: %+v, %d changes, %v", n, f, len(got), err)
			}
			for i, c := range got {
				if c.Seq != int64(100+i) || string(c.Raw) != string(recs[i]) {
					t.Fatalf("change %d = %d %s, want %d %s", i, c.Seq, c.Raw, 100+i, recs[i])
				}
				m, err := c.Decode()
				if err != nil {
					t.Fatal(err)
				}
				var want models.Change
				json.Unmarshal(recs[i], &want)
				if m.Seq != want.Seq || m.Table != want.Table || m.Op != want.Op || string(m.PK) != string(want.PK) ||
					string(m.Old) != string(want.Old) || string(m.New) != string(want.New) || m.TS != want.TS {
					t.Fatalf("Decode = %+v, want %+v", m, want)
				}
			}
		}
	}
}

func TestParseFrameCases(t *testing.T) {
	valid := []string{
		`{"type":"hello","version":1,"stream":"s","head":0,"oldest":1}`,
		`{"type":"subscribed","id":"a","head":120}`,
		`{"type":"error","id":null,"code":"bad_request","message":"m"}`,
		` { "type" : "changes" , "id" : "a" , "changes" : [ { "seq" : 1 , "table" : "t" , "op" : "insert" , "new" : { "x" : [ 1 , -2.5e+3 , true , false , null ] } } ] } `,
		`{"changes":[{"op":"delete","table":"t","seq":0}],"id":"a","type":"changes"}`,
		`{"type":"changes","id":"a","changes":[]}`,
		`{"type":"ch\u0061nges","id":"a","changes":[{"s\u0065q":5,"table":"t\"","op":"x"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"insert","seq":2}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"insert"}],"changes":{}}`,
		`{"type":"changes","id":"a","changes":[{"seq":9223372036854775807,"table":"t","op":"u","SEQ":3}]}`,
		`{"type":"future","whatever":[{}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","ts":1.5,"TS":"x","Pk":3}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","ts":null,"pk":{"a":1},"pk":{"a":2},"new":null}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","ts":-9223372036854775808}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","ts":9223372036854775808}]}`,
		`{}`,
		"{\"type\":\"changes\",\"id\":\"a\",\"changes\":[{\"seq\":1,\"table\":\"\xff\xfe\",\"op\":\"insert\"}]}",
	}
	for _, s := range valid {
		var in interner
		if _, _, err := parseFrame(nil, []byte(s), &in); err != nil {
			t.Errorf("parseFrame(%s): %v", s, err)
		}
		checkAgainstReference(t, []byte(s))
	}
	invalid := []string{
		``, ` `, `[]`, `"x"`, `{`, `{"type":"changes"`, `{"type":"changes",}`, `{"type":1}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"insert"}]} x`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"insert"},]}`,
		`{"type":"changes","id":"a","changes":[{"table":"t","op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":-1,"table":"t","op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1.0,"table":"t","op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1e3,"table":"t","op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":01,"table":"t","op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":"1","table":"t","op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":9223372036854775808,"table":"t","op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":7,"op":"insert"}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":null}]}`,
		`{"type":"changes","id":"a","changes":[1]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","new":{"a":tru}}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","new":{"a":1.}}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","new":{"a":-}}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","new":{"a":"\x"}}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","new":{"a":"\u12"}}]}`,
		"{\"type\":\"changes\",\"id\":\"a\",\"changes\":[{\"seq\":1,\"table\":\"t\n\",\"op\":\"i\"}]}",
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","new":{"a":[1 2]}}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","new":{1:2}}]}`,
		`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","new":{"a" 2}}]}`,
		`{"id":"a` + "\x00" + `"}`,
		strings.Repeat("[", 20000),
		`{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
	}
	for _, s := range invalid {
		var in interner
		dst := make([]Change, 1, 4)
		f, got, err := parseFrame(dst, []byte(s), &in)
		if err == nil {
			t.Errorf("parseFrame(%.80q) = %+v, want an error", s, f)
		}
		if len(got) != 1 {
			t.Errorf("parseFrame(%.80q) changed dst on error: %d", s, len(got))
		}
	}
}

func TestParseFrameInterns(t *testing.T) {
	var in interner
	b := serverFrame(`"a"`, record(1, "todos", models.OpInsert), record(2, "todos", models.OpUpdate))
	_, got, err := parseFrame(nil, b, &in)
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, got, _ = parseFrame(got[:0], b, &in) }); allocs != 0 {
		t.Errorf("parseFrame allocates %v times per frame in the steady state, want 0", allocs)
	}
	for i := range maxInterned + 10 {
		in.intern([]byte(fmt.Sprint("t", i)))
	}
	if len(in.m) != maxInterned {
		t.Errorf("interner holds %d names, want the bound %d", len(in.m), maxInterned)
	}
}

func TestAppendSubscribe(t *testing.T) {
	for _, tc := range []struct {
		got  []byte
		want string
	}{
		{appendSubscribe(nil, `"1"`, nil, 0, false, "", "", ""), `{"type":"subscribe","id":"1"}`},
		{appendSubscribe(nil, `"a"`, []string{"t", `o"dd`}, 0, true, "s1", "", ""),
			`{"type":"subscribe","id":"a","tables":["t","o\"dd"],"since":0,"stream":"s1"}`},
		{appendSubscribe(nil, `"a"`, nil, 42, true, "", `done = 0`, "id,title"),
			`{"type":"subscribe","id":"a","since":42,"where":"done = 0","select":"id,title"}`},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("appendSubscribe = %s, want %s", tc.got, tc.want)
		}
		if !json.Valid(tc.got) {
			t.Errorf("not valid JSON: %s", tc.got)
		}
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add(serverFrame(`"a"`, record(1, "todos", models.OpInsert)))
	f.Add(serverFrame(`"1"`, record(41, "todos", models.OpUpdate), record(42, "odd \"name\"", models.OpDelete)))
	f.Add([]byte(`{"type":"hello","version":1,"stream":"9f0c","head":120,"oldest":1}`))
	f.Add([]byte(`{"type":"reset","id":"a","reason":"pruned","stream":"9f0c","head":120}`))
	f.Add([]byte(`{"type":"error","id":null,"code":"unknown_table","message":"unknown table \"nope\""}`))
	f.Add([]byte(`{"type":"changes","id":"a","changes":[{"s\u0065q":5,"table":"t\"","op":"x","new":{"a":[1,-2.5e+3,true,null]}}]}`))
	f.Add([]byte(`{"type":"changes","id":"a","changes":[{"seq":1,"table":"t","op":"i","seq":2}],"changes":[]}`))
	f.Add([]byte(`{"type":"changes","id":"a","changes":[{"seq":01,"table":"t","op":"i"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstReference(t, b)
	})
}

// benchFrame is a changes frame of n records shaped like the demo's todos.
func benchFrame(n int) []byte {
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = record(int64(1000+i), "todos", []string{models.OpInsert, models.OpUpdate, models.OpDelete}[i%3])
	}
	return serverFrame(`"1"`, recs...)
}

// BenchmarkParseFrame measures the scanner alone, per frame size.
func BenchmarkParseFrame(b *testing.B) {
	for _, n := range []int{1, 10, 1000} {
		b.Run(fmt.Sprint(n, "changes"), func(b *testing.B) {
			frame := benchFrame(n)
			var in interner
			var dst []Change
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if _, dst, err = parseFrame(dst[:0], frame, &in); err != nil || len(dst) != n {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/change")
		})
	}
}

// BenchmarkDeliver measures what the reader does per frame after reading it: scan,
// find the subscription, dedupe and copy into its buffer, and the consumer's Next.
func BenchmarkDeliver(b *testing.B) {
	for _, n := range []int{1, 10, 1000} {
		b.Run(fmt.Sprint(n, "changes"), func(b *testing.B) {
			frame := benchFrame(n)
			c := &Client{subs: map[string]*Subscription{}, unsubs: map[string]chan struct{}{}, opts: (*Options)(nil).withDefaults()}
			s := &Subscription{c: c, id: "1", key: `"1"`, limit: 1 << 30, done: make(chan struct{}),
				ready: make(chan struct{}, 1), space: make(chan struct{}, 1), acked: make(chan struct{})}
			c.subs[s.key] = s
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				// The same frame again: forget its seqs, so nothing is dropped as a
				// duplicate.
				s.mu.Lock()
				s.queued = 0
				s.mu.Unlock()
				if err := c.handle(nil, frame); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < n; {
					batch, err := s.Next(b.Context())
					if err != nil {
						b.Fatal(err)
					}
					got += len(batch)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/change")
		})
	}
}

// BenchmarkUnmarshalFrame is the encoding/json baseline parseFrame replaces.
func BenchmarkUnmarshalFrame(b *testing.B) {
	for _, n := range []int{1, 10, 1000} {
		b.Run(fmt.Sprint(n, "changes"), func(b *testing.B) {
			frame := benchFrame(n)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				var f protocol.ChangesFrame
				if err := json.Unmarshal(frame, &f); err != nil || len(f.Changes) != n {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/change")
		})
	}
}

// TestQueue feeds a subscription's queue frames of random sizes, with duplicates,
// and takes from it at random moments: Next returns every new seq once, in order,
// with its record intact, and the buffers handed out are never written again.
func TestQueue(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	c := &Client{subs: map[string]*Subscription{}, unsubs: map[string]chan struct{}{}, opts: (*Options)(nil).withDefaults()}
	s := &Subscription{c: c, id: "q", key: `"q"`, limit: 1 << 30, done: make(chan struct{}),
		ready: make(chan struct{}, 1), space: make(chan struct{}, 1), acked: make(chan struct{})}
	c.subs[s.key] = s
	var got []Change
	var snapshots []string // the Raw of every change handed out, as first seen
	next, sent := int64(1), int64(0)
	for sent < 5000 {
		// A frame that may repeat up to 3 seqs already sent, then 1–300 new ones.
		from := max(1, next-int64(rnd.IntN(4)))
		n := 1 + rnd.IntN(300)
		var recs [][]byte
		for seq := from; seq < next+int64(n); seq++ {
			recs = append(recs, record(seq, "t"+strconv.FormatInt(seq%7, 10), models.OpUpdate))
		}
		next += int64(n)
		sent += int64(n)
		if err := c.handle(nil, serverFrame(`"q"`, recs...)); err != nil {
			t.Fatal(err)
		}
		for rnd.IntN(3) > 0 {
			if s.Stats().Buffered == 0 {
				break
			}
			b, err := s.Next(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b...)
			for _, ch := range b {
				snapshots = append(snapshots, string(ch.Raw))
			}
		}
	}
	for s.Stats().Buffered > 0 {
		b, _ := s.Next(t.Context())
		got = append(got, b...)
		for _, ch := range b {
			snapshots = append(snapshots, string(ch.Raw))
		}
	}
	if int64(len(got)) != sent {
		t.Fatalf("got %d changes, want %d", len(got), sent)
	}
	for i, ch := range got {
		want := record(int64(i+1), "t"+strconv.Itoa((i+1)%7), models.OpUpdate)
		if ch.Seq != int64(i+1) || string(ch.Raw) != string(want) || snapshots[i] != string(want) || ch.Table != "t"+strconv.Itoa((i+1)%7) {
			t.Fatalf("change %d = %d %s, want %s", i, ch.Seq, ch.Raw, want)
		}
	}
	if st := s.Stats(); st.Delivered != sent || st.Received != st.Delivered+st.Dropped || st.Dropped == 0 {
		t.Errorf("stats = %+v", st)
	}
}
