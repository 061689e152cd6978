// Package broker carries sqlws's change stream across nodes on NATS JetStream: one
// source node next to the database publishes every change once, in seq order, and
// any number of edge nodes serve WebSocket clients from the JetStream stream with the
// same fan-out (package fanout, package ws) and the same guarantees as the source —
// gapless commit-ordered seq, resume by since on any edge, reset when history is
// gone. docs/scaling.md describes the deployment; this is how the stream is laid out.
//
// # The stream
//
// One JetStream stream per database (--nats-stream, default "sqlws"), holding the
// subjects sqlws.<stream id>.> (see EscapeToken for how table names become subject
// tokens). Its metadata holds the database's stream id under MetaStreamID, which is
// what edges announce in hello and compare with a client's stream.
//
// JetStream's sequence is sqlws's seq: the stream is created with FirstSeq set to the
// first seq published, and every change is published with the expected last sequence
// seq-1 (and the message id "<stream id>:<seq>"), so JetStream stores seq s only
// right after s-1, exactly once, whoever publishes it and however often it is
// retried. After any failure the publisher reads the stream's last sequence and goes
// on from there: no gap, no duplicate. The payload is the change record's JSON as
// sqlws encodes it, so edges serve byte-identical records.
//
// # Holes
//
// JetStream sequences cannot skip, but the changelog can have holes the publisher
// did not publish yet: retention pruned changes while the publisher was behind (or
// NATS was down), or someone deleted rows of sqlws_changes by hand. The publisher
// never steps over one silently:
//
//   - Pruned: the changelog now starts after the hole (its oldest seq is past the
//     next seq to publish). Everything before is gone on the source too, so the
//     stream is purged up to that seq — JetStream then starts there — and edges
//     answer reset pruned to clients behind it, as the source does.
//   - A hole in the middle (rows deleted by hand), or a change larger than NATS's
//     max_payload: each missing seq is published as a tombstone, a message without
//     payload carrying HeaderGap. Edges read a tombstone as the changelog's hole:
//     they deliver up to it and answer reset pruned, as the source does. A hole of
//     more than maxTombstones seqs is purged instead.
//
// A mark (a changelog row that holds a seq but no change, see capture/native.go) is
// published as a message without payload carrying HeaderMark: not a hole, and no
// client receives it, on an edge as on the source.
//
// # Schema and dropped tables
//
// Edges need the tracked tables (subscribe answers unknown_table otherwise) and the
// table drops (subscriptions end with table_dropped). The publisher keeps both in
// the key-value bucket SchemaBucket(stream), keys "tables" and "drops", and stamps
// every change with HeaderSchema, the bucket revision it was published after. An
// edge applies the bucket as it watches it, and before it hands a change to its
// window it makes sure it has applied that revision, so a drop always takes effect
// on an edge before the changes that follow it, as on the source.
package broker
