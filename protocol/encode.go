package protocol

import (
	"encoding/json"
	"slices"

	"github.com/sqlws/sqlws/models"
)

// A changes message is its records' own bytes, each encoded once for every
// subscriber, between a head naming the subscription, separators and a tail: a frame
// is a copy (or a gather) of those bytes, never a re-encoding.
const (
	// ChangesSep separates two records in a changes message.
	ChangesSep = ","
	// ChangesTail ends a changes message.
	ChangesTail = "]}"
)

// AppendChangesHead appends the head of a changes message for subscription id.
func AppendChangesHead(dst []byte, id json.RawMessage) []byte {
	dst = append(dst, `{"type":"changes","id":`...)
	dst = append(dst, id...)
	return append(dst, `,"changes":[`...)
}

// ChangesLen is the length of the changes message AppendChanges would write.
func ChangesLen(id json.RawMessage, entries []models.Encoded) int {
	n := len(`{"type":"changes","id":,"changes":[]}`) + len(id) + max(len(entries)-1, 0)
	for _, e := range entries {
		n += len(e.JSON)
	}
	return n
}

// AppendChanges appends a changes message for subscription id carrying entries.
func AppendChanges(dst []byte, id json.RawMessage, entries []models.Encoded) []byte {
	dst = slices.Grow(dst, ChangesLen(id, entries)) // one allocation at most, however large the frame
	dst = AppendChangesHead(dst, id)
	for i, e := range entries {
		if i > 0 {
			dst = append(dst, ChangesSep...)
		}
		dst = append(dst, e.JSON...)
	}
	return append(dst, ChangesTail...)
}

// HelloMessage encodes hello.
func HelloMessage(stream string, p models.Position) []byte {
	return marshal(Hello{Type: TypeHello, Version: Version, Stream: stream, Head: p.Head, Oldest: p.Oldest})
}

// SubscribedMessage encodes subscribed.
func SubscribedMessage(id json.RawMessage, head int64) []byte {
	return marshal(Subscribed{Type: TypeSubscribed, ID: id, Head: head})
}

// UnsubscribedMessage encodes unsubscribed.
func UnsubscribedMessage(id json.RawMessage) []byte {
	return marshal(Unsubscribed{Type: TypeUnsubscribed, ID: id})
}

// ResetMessageFor encodes reset.
func ResetMessageFor(id json.RawMessage, reason, stream string, head int64) []byte {
	return marshal(Reset{Type: TypeReset, ID: id, Reason: reason, Stream: stream, Head: head})
}

// ErrorMessageFor encodes error; a nil id is sent as null.
func ErrorMessageFor(id json.RawMessage, code, msg string) []byte {
	if id == nil {
		id = json.RawMessage("null")
	}
	return marshal(ErrorMessage{Type: TypeError, ID: id, Code: code, Message: msg})
}

// AuthedMessage encodes authed.
func AuthedMessage(exp int64) []byte { return marshal(Authed{Type: TypeAuthed, Exp: exp}) }

// marshal encodes a message that cannot fail to encode (fixed fields, RawMessage
// ids that Parse validated).
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: encode " + err.Error())
	}
	return b
}
