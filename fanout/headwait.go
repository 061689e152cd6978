package fanout

import (
	"context"

	"github.com/sqlws/sqlws/models"
)

// HeadWaiter is implemented by a Source whose head can trail positions that clients
// learn elsewhere: an edge node's JetStream stream is a few milliseconds behind the
// source database, whose REST answers carry the database's own seq. A client that
// reloads from REST and subscribes at an edge with that seq as since must not be
// told reset future because the publisher has not caught up yet. The WebSocket
// hub asks a HeadWaiter, before answering future, to wait (for a bounded time of its
// own choosing) for the head to reach since.
type HeadWaiter interface {
	// WaitHead returns the position once its head is at least seq, or the position
	// as it stands when its wait runs out (the caller then answers future).
	WaitHead(ctx context.Context, seq int64) (models.Position, error)
}
