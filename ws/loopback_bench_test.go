package ws_test

import (
	"io"
	"net"
	"testing"
)

// BenchmarkLoopbackFrame is the physical reference under W1's latency: what one
// change frame costs the kernel to carry over loopback TCP on this machine, with no
// WebSocket code at all — one write(2) of a 300-byte frame by the sender and the
// reads that take it off the socket on the other side (here, a goroutine reading
// into a 64 KiB buffer, as a WebSocket client's buffered reader does). Every
// subscriber of a change costs at least this much CPU.
//
//	go test -run '^$' -bench LoopbackFrame ./ws
func BenchmarkLoopbackFrame(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		defer c.Close()
		n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 64<<10))
		done <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	frame := make([]byte, 300)
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	if n := <-done; n != int64(b.N*len(frame)) {
		b.Fatalf("read %d bytes, wrote %d", n, b.N*len(frame))
	}
}
