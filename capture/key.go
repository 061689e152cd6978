package capture

import (
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
)

// A change's key as the capture triggers store it: the positions of the key columns
// among the row image's members, as a JSON array of integers ("[0]", "[2,0]"); see
// keyExpr. keyFromImage turns it back into the key object clients get, {"id":5},
// with each key member copied byte for byte from the image.

var errBadKey = errors.New("change key does not match its row image")

// AppendKey appends to dst the key object of a changelog row whose pk column holds
// pk: the members of the row image (new, or old for a delete) at the positions pk
// lists, or pk itself for rows written before keys were positions (a JSON object). A
// key that does not match its image (only a hand-edited changelog has one) appends
// nothing, and the change goes out with a null key rather than stop the stream behind
// it. The key is still in the private format: AppendChange finishes it.
func AppendKey(dst, pk []byte, op string, old, new []byte) []byte {
	if len(pk) == 0 || pk[0] != '[' {
		return append(dst, pk...)
	}
	image := new
	if op == models.OpDelete {
		image = old
	}
	out, err := keyFromImage(dst, pk, image)
	if err != nil {
		return dst
	}
	return out
}

// keyFromImage appends to dst the JSON object of the members of image (a JSON object)
// at the positions listed in pos (a JSON array of integers), in that order.
func keyFromImage(dst, pos, image []byte) ([]byte, error) {
	// The positions first, so the image is scanned only as far as the last of them:
	// usually the key is the first member and the rest of the row is never looked at.
	var posBuf [8]int
	want := posBuf[:0]
	last := -1
	for j := 0; j < len(pos); j++ {
		if pos[j] < '0' || pos[j] > '9' {
			continue // '[', ',', ']', spaces
		}
		p := 0
		for ; j < len(pos) && pos[j] >= '0' && pos[j] <= '9'; j++ {
			p = p*10 + int(pos[j]-'0')
			if p > 1<<20 {
				return dst, errBadKey
			}
		}
		want = append(want, p)
		last = max(last, p)
	}
	if last < 0 {
		return dst, errBadKey
	}
	var spans [8][2]int
	members := spans[:0]
	i := models.SkipJSONSpace(image, 0)
	if i >= len(image) || image[i] != '{' {
		return dst, errBadKey
	}
	i = models.SkipJSONSpace(image, i+1)
	for len(members) <= last {
		if i >= len(image) || image[i] != '"' {
			return dst, errBadKey // fewer members than the key needs, or not a member
		}
		start := i
		var ok bool
		if i, ok = models.SkipJSONString(image, i); !ok {
			return dst, errBadKey
		}
		i = models.SkipJSONSpace(image, i)
		if i >= len(image) || image[i] != ':' {
			return dst, errBadKey
		}
		if i, ok = models.SkipJSONValue(image, models.SkipJSONSpace(image, i+1)); !ok {
			return dst, errBadKey
		}
		members = append(members, [2]int{start, i})
		i = models.SkipJSONSpace(image, i)
		if i < len(image) && image[i] == ',' {
			i = models.SkipJSONSpace(image, i+1)
		} else if len(members) <= last {
			return dst, errBadKey
		}
	}
	dst = append(dst, '{')
	for n, p := range want {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, image[members[p][0]:members[p][1]]...)
	}
	return append(dst, '}'), nil
}
