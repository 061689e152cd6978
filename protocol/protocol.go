// Package protocol is sqlws's client protocol, version 1 (docs/protocol.md), apart
// from any transport: the messages a server and a client exchange, how a client's
// request is parsed and bounded, how server messages are encoded, and the rules that
// decide whether a stream can be resumed. The WebSocket server (package ws), the Go
// client (package client) and /api/changes all use it; it imports nothing that does
// I/O.
package protocol

import (
	"encoding/json"

	"github.com/sqlws/sqlws/models"
)

// Version is the protocol version announced in hello.
const Version = 1

// Message types.
const (
	TypeHello        = "hello"
	TypeSubscribe    = "subscribe"
	TypeSubscribed   = "subscribed"
	TypeChanges      = "changes"
	TypeReset        = "reset"
	TypeUnsubscribe  = "unsubscribe"
	TypeUnsubscribed = "unsubscribed"
	TypeError        = "error"
	// TypeAuth replaces a connection's token in place (before it expires); the
	// server answers TypeAuthed.
	TypeAuth   = "auth"
	TypeAuthed = "authed"
)

// Reset reasons.
const (
	ResetPruned = "pruned" // changes after since are no longer in the changelog
	ResetFuture = "future" // since is beyond the head: the client saw changes this database lacks
	ResetStream = "stream" // the client's stream is another database's
)

// Hello is the server's first message.
type Hello struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	Stream  string `json:"stream"`
	Head    int64  `json:"head"`
	Oldest  int64  `json:"oldest"`
}

// ClientMessage is any message a client sends, as it arrives: fields stay raw so
// that "absent" and "zero" differ and a mistyped field is reported precisely. Parse
// validates it.
type ClientMessage struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id"`
	Tables json.RawMessage `json:"tables"`
	Since  json.RawMessage `json:"since"`
	Stream json.RawMessage `json:"stream"`
	Where  json.RawMessage `json:"where"`
	Select json.RawMessage `json:"select"`
	Token  json.RawMessage `json:"token"`
}

// Authed acknowledges an auth message: the new token's expiry, unix seconds.
type Authed struct {
	Type string `json:"type"`
	Exp  int64  `json:"exp"`
}

// Subscribed acknowledges a subscription.
type Subscribed struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id"`
	Head int64           `json:"head"`
}

// Reset tells a client its stream position cannot be continued.
type Reset struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id"`
	Reason string          `json:"reason"`
	Stream string          `json:"stream"`
	Head   int64           `json:"head"`
}

// Unsubscribed acknowledges an unsubscribe.
type Unsubscribed struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id"`
}

// ErrorMessage reports a failed request; ID is null when unknown.
type ErrorMessage struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

// ChangesFrame is the decoded form of a changes message, for clients and tests.
type ChangesFrame struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Changes []models.Change `json:"changes"`
}

// ResetReason says whether a client can resume the stream after since, and if not,
// why: "" when it can, else ResetStream, ResetFuture or ResetPruned.
// clientStream "" matches any stream. These are the rules of every path that
// resumes: the WebSocket and /api/changes.
func ResetReason(serverStream, clientStream string, p models.Position, since int64) string {
	switch {
	case clientStream != "" && clientStream != serverStream:
		return ResetStream
	case since > p.Head:
		return ResetFuture
	case since < p.Oldest-1:
		return ResetPruned
	}
	return ""
}

// ResetMessage is a sentence for a client about reason, for where a reset is an
// error (/api/changes answers 410 with it).
func ResetMessage(reason string) string {
	switch reason {
	case ResetStream:
		return "stream differs: this is another database's change stream; reload"
	case ResetFuture:
		return "since is beyond the head of this database's changelog; reload"
	}
	return "changes after since are no longer in the changelog; reload"
}
