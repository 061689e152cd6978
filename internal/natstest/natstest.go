// Package natstest runs a real NATS server with JetStream inside the test process, for
// tests of sqlws's scale-out (package broker, the e2e tests of `sqlws serve --publish`
// and `sqlws edge`). Nothing is mocked: it is nats-server itself, embedded, on
// 127.0.0.1 with a random port and a temporary store directory. Restart shuts it down
// and starts it again on the same port and store, which is how a NATS restart looks
// to its clients.
package natstest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded NATS server with JetStream.
type Server struct {
	// URL is the client URL, nats://127.0.0.1:PORT; it stays the same across Restart.
	URL string
	// Dir is the JetStream store directory; it survives Restart.
	Dir string

	t    testing.TB
	port int
	opts func(*server.Options)

	mu sync.Mutex
	s  *server.Server // nil while shut down
}

// Start runs a server until the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, nil)
}

// StartWith is Start with the server's options adjusted by opts (e.g. MaxPayload).
func StartWith(t testing.TB, opts func(*server.Options)) *Server {
	t.Helper()
	ns := &Server{t: t, Dir: t.TempDir(), port: -1, opts: opts}
	ns.start()
	t.Cleanup(ns.Shutdown)
	return ns
}

func (ns *Server) start() {
	ns.t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      ns.port,
		JetStream: true,
		StoreDir:  ns.Dir,
		// Bounded, so a test cannot take the shared machine's memory or disk.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  2 << 30,
		NoLog:              true,
		NoSigs:             true,
	}
	if ns.opts != nil {
		ns.opts(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		ns.t.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		ns.t.Fatalf("natstest: server not ready within 30s")
	}
	if ns.port == -1 {
		_, p, err := net.SplitHostPort(s.Addr().String())
		if err != nil {
			ns.t.Fatal(err)
		}
		ns.port, _ = strconv.Atoi(p)
		ns.URL = fmt.Sprintf("nats://127.0.0.1:%d", ns.port)
	}
	ns.mu.Lock()
	ns.s = s
	ns.mu.Unlock()
}

// Shutdown stops the server (its store stays); it may be called more than once.
func (ns *Server) Shutdown() {
	ns.mu.Lock()
	s := ns.s
	ns.s = nil
	ns.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart shuts the server down, if it runs, and starts it again on the same port and
// store directory.
func (ns *Server) Restart() {
	ns.t.Helper()
	ns.Shutdown()
	ns.start()
}

// Connect returns a client connection that reconnects forever; it is closed at the
// end of the test.
func (ns *Server) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.URL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection (see Connect).
func (ns *Server) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// StreamInfo reads a stream's info, retrying for up to 30s while the server is
// restarting or JetStream is not yet available.
func StreamInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := js.Stream(ctx, name)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ctx)
		}
		cancel()
		if err == nil {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: stream %s info: %v", name, err)
		}
		<-tick.C
	}
}
