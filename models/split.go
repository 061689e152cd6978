package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// Parts are the members of a change record as AppendChange wrote them, each value's
// raw JSON (pk, old and new as they are, "null" included), without decoding them.
type Parts struct {
	Op           string
	Moved        string
	PK, Old, New []byte
	Seq, TS      int64
	Table        []byte // the JSON string, quotes included
}

var errRecord = errors.New("malformed change record")

// SplitChange splits a change record into its members in one pass, for readers that
// look at every change (filters): encoding/json would cost several times more. It
// accepts exactly the records AppendChange writes (any member order); anything else
// is an error.
func SplitChange(rec []byte) (Parts, error) {
	var p Parts
	i := skipWS(rec, 0)
	if i >= len(rec) || rec[i] != '{' {
		return p, errRecord
	}
	i++
	for {
		i = skipWS(rec, i)
		if i < len(rec) && rec[i] == '}' {
			return p, nil
		}
		if i >= len(rec) || rec[i] != '"' {
			return p, errRecord
		}
		kEnd, ok := skipJSONString(rec, i)
		if !ok {
			return p, errRecord
		}
		key := rec[i+1 : kEnd-1]
		i = skipWS(rec, kEnd)
		if i >= len(rec) || rec[i] != ':' {
			return p, errRecord
		}
		i = skipWS(rec, i+1)
		vEnd, ok := skipJSONValue(rec, i)
		if !ok {
			return p, errRecord
		}
		v := rec[i:vEnd]
		switch string(key) {
		case "seq":
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return p, errRecord
			}
			p.Seq = n
		case "ts":
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return p, errRecord
			}
			p.TS = n
		case "table":
			p.Table = v
		case "op", "moved":
			var s string
			if bytes.IndexByte(v, '\\') < 0 && len(v) >= 2 && v[0] == '"' {
				s = string(v[1 : len(v)-1])
			} else if json.Unmarshal(v, &s) != nil {
				return p, errRecord
			}
			if string(key) == "op" {
				p.Op = s
			} else {
				p.Moved = s
			}
		case "pk":
			p.PK = v
		case "old":
			p.Old = v
		case "new":
			p.New = v
		}
		i = skipWS(rec, vEnd)
		if i < len(rec) && rec[i] == ',' {
			i++
		} else if i >= len(rec) || rec[i] != '}' {
			return p, errRecord
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipJSONString returns the index after the JSON string starting at b[i] ('"').
func skipJSONString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return i, false
}

// skipJSONValue returns the index after the JSON value starting at b[i]. Brackets are
// counted outside strings; the records are sqlws's own, so well-formed.
func skipJSONValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return skipJSONString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, ok := skipJSONString(b, i)
				if !ok {
					return end, false
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return i, false
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i, true
		}
	}
	return i, true
}
