package protocol

import (
	"encoding/json"
	"slices"

	"github.com/sqlws/sqlws/models"
)

// AppendChanges appends a changes message for subscription id carrying entries,
// each already encoded once as its change record: a frame is a copy of those bytes
// between a fixed head and tail, never a re-encoding.
func AppendChanges(dst []byte, id json.RawMessage, entries []models.Encoded) []byte {
	n := len(`{"type":"changes","id":,"changes":[]}`) + len(id) + len(entries)
	for _, e := range entries {
		n += len(e.JSON)
	}
	dst = slices.Grow(dst, n) // one allocation at most, however large the frame
	dst = append(dst, `{"type":"changes","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"changes":[`...)
	for i, e := range entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e.JSON...)
	}
	return append(dst, "]}"...)
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

// marshal encodes a message that cannot fail to encode (fixed fields, RawMessage
// ids that Parse validated).
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: encode " + err.Error())
	}
	return b
}
