//go:build linux

package main

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The epoll client reassembles fragmented messages, answers pings with masked pongs,
// and ends on a close frame, over a real socket.
func TestPolledConnFrames(t *testing.T) {
	defer stopPollers()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fds[0], true) // so the reads below honour their deadline
	server := os.NewFile(uintptr(fds[0]), "server")
	defer server.Close()
	f := os.NewFile(uintptr(fds[1]), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The first frame arrives with the upgrade response (rest), split mid-header.
	hello := []byte{0x81, 5, 'h', 'e', 'l', 'l', 'o'}
	pc, err := newPolledConn(nc, hello[:1])
	if err != nil {
		t.Fatal(err)
	}
	type msg struct {
		text bool
		s    string
	}
	msgs := make(chan msg, 10)
	ended := make(chan error, 1)
	pc.start(func(b []byte, text bool) { msgs <- msg{text, string(b)} }, func(err error) { ended <- err })

	big := make([]byte, 70000)
	for i := range big {
		big[i] = 'x'
	}
	stream := append([]byte(nil), hello[1:]...)
	stream = append(stream, 0x01, 3, 'a', 'b', 'c') // text, not final
	stream = append(stream, 0x89, 2, 'p', '1')      // ping between fragments
	stream = append(stream, 0x80, 2, 'd', 'e')      // final continuation
	stream = append(stream, 0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70)
	stream = append(stream, big...)              // binary, 64-bit length
	stream = append(stream, 0x88, 2, 0x03, 0xE9) // close 1001
	// Written in small pieces, so frames and headers straddle reads.
	for i := 0; i < len(stream); i += 7 {
		if _, err := server.Write(stream[i:min(i+7, len(stream))]); err != nil {
			t.Fatal(err)
		}
	}
	want := []msg{{true, "hello"}, {true, "abcde"}, {false, string(big)}}
	for _, w := range want {
		select {
		case got := <-msgs:
			if got != w {
				t.Fatalf("got message (text %v, %d bytes), want (text %v, %d bytes)", got.text, len(got.s), w.text, len(w.s))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no message %.10q", w.s)
		}
	}
	select {
	case err := <-ended:
		if !errors.Is(err, errClosedByPeer) {
			t.Fatalf("end: %v, want closed by peer", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close frame did not end the connection")
	}
	// The pong: final, masked, same payload once unmasked.
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	pong := make([]byte, 8)
	if _, err := server.Read(pong); err != nil {
		t.Fatal(err)
	}
	if pong[0] != 0x8A || pong[1] != 0x80|2 || pong[6]^pong[2] != 'p' || pong[7]^pong[3] != '1' {
		t.Fatalf("pong frame % x", pong)
	}
}
