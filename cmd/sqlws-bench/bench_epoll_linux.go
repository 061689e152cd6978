//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollLoop reads the sockets registered with it: one epoll instance, level-triggered,
// one read(2) per ready socket per wake-up. Its goroutine runs until stopPollers.
type pollLoop struct {
	epfd   int
	wakeFD int // an eventfd; stopPollers writes it to end the loop
	mu     sync.Mutex
	conns  map[int]*polledConn // by fd
	done   chan struct{}
}

var (
	loopsMu  sync.Mutex
	loops    []*pollLoop
	nextPoll atomic.Uint32
)

// pollLoopFor returns a loop for a new connection, starting one loop per core on
// first use.
func pollLoopFor() (*pollLoop, error) {
	loopsMu.Lock()
	defer loopsMu.Unlock()
	if loops == nil {
		for range max(2, min(runtime.NumCPU(), 4)) {
			l, err := newPollLoop()
			if err != nil {
				return nil, err
			}
			loops = append(loops, l)
		}
	}
	return loops[nextPoll.Add(1)%uint32(len(loops))], nil
}

// stopPollers ends the loops' goroutines; connections still registered are closed
// and their onEnd called.
// The bench calls it when it is done.
func stopPollers() {
	loopsMu.Lock()
	ls := loops
	loops = nil
	loopsMu.Unlock()
	for _, l := range ls {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(l.wakeFD, one[:])
		<-l.done
		// The loop has stopped, so finishing here races with nothing.
		l.mu.Lock()
		left := make([]*polledConn, 0, len(l.conns))
		for _, c := range l.conns {
			left = append(left, c)
		}
		l.mu.Unlock()
		for _, c := range left {
			c.finish(net.ErrClosed)
		}
		unix.Close(l.epfd)
		unix.Close(l.wakeFD)
	}
}

func newPollLoop() (*pollLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	l := &pollLoop{epfd: epfd, wakeFD: wfd, conns: map[int]*polledConn{}, done: make(chan struct{})}
	go l.run()
	return l, nil
}

func (l *pollLoop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == l.wakeFD {
				return
			}
			l.mu.Lock()
			c := l.conns[fd]
			l.mu.Unlock()
			if c != nil {
				c.readable()
			}
		}
	}
}

// polledConn is a client WebSocket read by a pollLoop. Its read state (buf, msg,
// the handlers' data) belongs to the loop's goroutine once registered.
type polledConn struct {
	loop      *pollLoop
	fd        int
	buf       []byte // read, not yet parsed
	msg       []byte // a fragmented message being reassembled
	inMsg     bool
	msgText   bool
	onMessage func([]byte, bool)
	onEnd     func(error)

	mu     sync.Mutex // closed and fd, for writers and closeNow
	closed bool
}

// newPolledConn takes over nc's socket: it duplicates the descriptor and closes nc,
// which removes the socket from Go's netpoller, so only the loop is woken by it.
func newPolledConn(nc net.Conn, rest []byte) (*polledConn, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		nc.Close()
		return nil, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		nc.Close()
		return nil, err
	}
	fd := -1
	cerr := raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
	nc.Close()
	if cerr != nil || err != nil {
		return nil, fmt.Errorf("take socket: %w", errors.Join(cerr, err))
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	loop, err := pollLoopFor()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	buf := make([]byte, len(rest), max(len(rest), 4<<10))
	copy(buf, rest)
	return &polledConn{loop: loop, fd: fd, buf: buf}, nil
}

func (c *polledConn) start(onMessage func([]byte, bool), onEnd func(error)) {
	c.onMessage, c.onEnd = onMessage, onEnd
	// Bytes that came with the upgrade response first (hello, usually).
	if err := c.parse(); err != nil {
		c.finish(err)
		return
	}
	l := c.loop
	l.mu.Lock()
	l.conns[c.fd] = c
	l.mu.Unlock()
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)}); err != nil {
		c.finish(fmt.Errorf("epoll: %w", err))
	}
}

// readable reads once; level-triggered epoll reports the socket again if more is
// waiting.
func (c *polledConn) readable() {
	if cap(c.buf)-len(c.buf) < 1<<10 {
		grown := make([]byte, len(c.buf), 2*cap(c.buf)+4<<10)
		copy(grown, c.buf)
		c.buf = grown
	}
	n, err := unix.Read(c.fd, c.buf[len(c.buf):cap(c.buf)])
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return
	case err != nil:
		c.finish(err)
		return
	case n == 0:
		c.finish(io.EOF)
		return
	}
	c.buf = c.buf[:len(c.buf)+n]
	if err := c.parse(); err != nil {
		c.finish(err)
	}
}

// parse delivers every complete frame in buf and keeps the rest, with room for the
// whole of a frame that has begun.
func (c *polledConn) parse() error {
	off, need := 0, 0
	for {
		hl, pl, fin, op, ok, err := frameHeader(c.buf[off:])
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		total := hl + int(pl)
		if len(c.buf)-off < total {
			need = total
			break
		}
		payload := c.buf[off+hl : off+total]
		off += total
		if err := c.handle(fin, op, payload); err != nil {
			return err
		}
	}
	rest := len(c.buf) - off
	switch {
	case need > cap(c.buf) || (rest == 0 && cap(c.buf) > 64<<10):
		// Room for the frame that has begun, or give a big frame's buffer back.
		nb := make([]byte, rest, max(need+1<<10, 4<<10))
		copy(nb, c.buf[off:])
		c.buf = nb
	case off > 0:
		c.buf = c.buf[:copy(c.buf, c.buf[off:])]
	}
	return nil
}

func (c *polledConn) handle(fin bool, op byte, payload []byte) error {
	switch op {
	case 0x9: // ping: answer with the same payload
		return c.send(context.Background(), 0xA, payload)
	case 0xA: // pong
		return nil
	case 0x8:
		code := 0
		if len(payload) >= 2 {
			code = int(binary.BigEndian.Uint16(payload))
		}
		return fmt.Errorf("%w (status %d)", errClosedByPeer, code)
	case 0x1, 0x2:
		if c.inMsg {
			return errors.New("new message inside a fragmented one")
		}
		if fin {
			c.onMessage(payload, op == 0x1)
			return nil
		}
		c.inMsg, c.msgText = true, op == 0x1
		c.msg = append(c.msg[:0], payload...)
	case 0x0:
		if !c.inMsg {
			return errors.New("continuation frame without a message")
		}
		c.msg = append(c.msg, payload...)
		if fin {
			c.inMsg = false
			c.onMessage(c.msg, c.msgText)
		}
	default:
		return fmt.Errorf("unknown opcode %#x", op)
	}
	return nil
}

// finish closes the socket and reports the end, once.
func (c *polledConn) finish(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	l := c.loop
	l.mu.Lock()
	delete(l.conns, c.fd)
	l.mu.Unlock()
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	unix.Close(c.fd)
	c.mu.Unlock()
	c.onEnd(err)
}

// send writes one masked frame, waiting (up to ctx's deadline, else 10 s) while the
// socket's buffer is full.
func (c *polledConn) send(ctx context.Context, op byte, payload []byte) error {
	frame := clientFrame(op, payload)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(frame) > 0 {
		if c.closed {
			return net.ErrClosed
		}
		n, err := unix.Write(c.fd, frame)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			wait := time.Until(deadline)
			if wait <= 0 {
				return fmt.Errorf("write: %w", context.DeadlineExceeded)
			}
			unix.Poll([]unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}, int(min(wait, 100*time.Millisecond)/time.Millisecond)+1)
			continue
		case err != nil:
			return err
		}
		frame = frame[n:]
	}
	return nil
}

func (c *polledConn) writeText(ctx context.Context, msg []byte) error { return c.send(ctx, 0x1, msg) }

// closeNow shuts the socket down; the loop then reads its end and finishes it.
func (c *polledConn) closeNow() {
	c.mu.Lock()
	if !c.closed {
		unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
	c.mu.Unlock()
}
