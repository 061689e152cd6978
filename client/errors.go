package client

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by calls on a Client after Close, and by Next on its
	// subscriptions.
	ErrClosed = errors.New("sqlws client: closed")
	// ErrUnsubscribed is returned by Next after Unsubscribe, or after the Subscribe
	// that created the subscription gave up (its context ended).
	ErrUnsubscribed = errors.New("sqlws client: unsubscribed")
)

// ResetError ends a subscription: the server cannot continue it from where it is,
// so the caller's state may be missing changes. The only safe recovery is to reload
// (REST answers carry the seq they are current as of) and subscribe again with that
// seq as Since. The client never does this by itself, because only the caller knows
// what to reload.
type ResetError struct {
	// ID is the subscription's id.
	ID string
	// Reason is protocol.ResetPruned (retention removed changes the subscription still
	// needed), protocol.ResetFuture (the subscription has seen changes the database
	// does not have: a restored backup) or protocol.ResetStream (another database).
	Reason string
	// Head is the server's last seq when it sent the reset.
	Head int64
	// Stream is the server's stream id; the Client adopts it for new subscriptions.
	Stream string
}

// Error says what happened and what the caller must do.
func (e *ResetError) Error() string {
	return fmt.Sprintf("sqlws client: subscription %q reset (%s): reload and subscribe again (server head %d)", e.ID, e.Reason, e.Head)
}

// ServerError is an error reply to a request (docs/protocol.md lists the codes).
// Subscribe returns it when the server refuses a subscription (unknown_table,
// bad_request, duplicate_id, …); the subscription does not exist then. The codes
// unavailable (a busy database) and internal (a server fault) are never returned:
// like /sqlws.js, the client takes them as transient and asks again after
// Options.RetryDelay, for as long as Subscribe's context allows (and, for a
// subscription being resumed after a reconnect, until it succeeds).
type ServerError struct {
	// ID is the subscription id the request was for.
	ID string
	// Code is the machine-readable code, e.g. "unknown_table".
	Code string
	// Message is the human-readable explanation.
	Message string
}

// Error includes the code, so a log line is enough to tell refusals apart.
func (e *ServerError) Error() string {
	return fmt.Sprintf("sqlws client: subscription %q: %s: %s", e.ID, e.Code, e.Message)
}
