//go:build !linux

package main

import (
	"errors"
	"net"
)

// The epoll client is Linux-only.
func newPolledConn(nc net.Conn, rest []byte) (benchConn, error) {
	nc.Close()
	return nil, errors.New("--client epoll needs Linux; use --client coder")
}

func stopPollers() {}
