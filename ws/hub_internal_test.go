package ws

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/models"
)

func enc(seq int64, table string) models.Encoded {
	return models.Encoded{Seq: seq, Table: table, JSON: models.AppendChange(nil, seq, table, "insert", []byte(`{"id":1}`), nil, []byte(`{"id":1}`), 1)}
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
	win := fanout.NewWindow(nil, 0, fanout.Options{})
	h := NewHub(win, nil, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &conn{hub: h, fc: fc, ctx: ctx, cancel: cancel, subs: map[string]*subscription{}}
	s := &subscription{id: []byte(`"s"`), key: `"s"`, cur: win.NewCursor(nil, 0)}
	c.subs[s.key], c.order = s, []*subscription{s}

	f := &frame{buf: framePool.Get().(*[]byte)}
	e := enc(1, "t")
	seq, frames := int64(0), 0
	step := func() {
		seq++
		e.Seq = seq
		h.Publish([]models.Encoded{e})
		if c.pumpOne(f) {
			frames++
		}
	}
	for range 10 {
		step()
	}
	allocs := testing.AllocsPerRun(200, step)
	if frames != 211 || s.cur.Pos() != seq || c.writing {
		t.Fatalf("%d frames written directly for %d changes (cursor %d, writer started %v)", frames, seq, s.cur.Pos(), c.writing)
	}
	if allocs > 0.05 {
		t.Fatalf("%.2f allocations per delivered change, want 0", allocs)
	}
	server.Close()
	if n := <-received; n < int64(frames)*int64(len(e.JSON)) {
		t.Fatalf("client received %d bytes for %d frames of a %d-byte change", n, frames, len(e.JSON))
	}
}
