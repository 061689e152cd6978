package capture

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestKeyFromImage(t *testing.T) {
	for _, c := range []struct{ pos, image, want string }{
		{`[0]`, `{"id":5,"v":"x"}`, `{"id":5}`},
		{`[1]`, `{"id":5,"v":"x"}`, `{"v":"x"}`},
		{`[2,0]`, `{"a":1,"b":{"$blob":"00"},"c":"q\"}{,"}`, `{"c":"q\"}{,","a":1}`},
		{`[1]`, `{"a":[1,{"x":"]"}],"k\u00e9":{"$ldexp":[0.5,2]}}`, `{"k\u00e9":{"$ldexp":[0.5,2]}}`},
		{`[ 0 , 1 ]`, ` { "a" : -1.5e3 , "b" : null } `, `{"a" : -1.5e3,"b" : null}`},
		{`[10]`, `{"c0":0,"c1":1,"c2":2,"c3":3,"c4":4,"c5":5,"c6":6,"c7":7,"c8":8,"c9":9,"c10":10}`, `{"c10":10}`},
		// A value nested deeper than anything sqlws writes itself (json() in a TEXT column).
		{`[1]`, `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `,"id":7}`, `{"id":7}`},
		// Only members up to the last key position are looked at.
		{`[0]`, `{"id":1,"rest":`, `{"id":1}`},
	} {
		got, err := keyFromImage(nil, []byte(c.pos), []byte(c.image))
		if err != nil || string(got) != c.want {
			t.Errorf("keyFromImage(%s, %s) = %s, %v; want %s", c.pos, c.image, got, err, c.want)
		}
	}
	for _, c := range []struct{ pos, image string }{
		{`[1]`, `{"id":5}`},       // no such member
		{`[]`, `{"id":5}`},        // no key
		{`[0]`, `{"id":`},         // truncated
		{`[1]`, `{"id":5`},        // truncated before the key member
		{`[0]`, `{"id":"5}`},      // unterminated string
		{`[0]`, `["id",5]`},       // not an object
		{`[0]`, ``},               // no image (a delete's new)
		{`[0]`, `{"id":{"a":[1}`}, // unbalanced
	} {
		if got, err := keyFromImage(nil, []byte(c.pos), []byte(c.image)); err == nil {
			t.Errorf("keyFromImage(%s, %s) = %s, want an error", c.pos, c.image, got)
		}
	}
}

// Any JSON object: the key built from positions holds exactly the members at those
// positions, as encoding/json reads them.
func FuzzKeyFromImage(f *testing.F) {
	f.Add(`{"id":5,"v":"x","b":{"$blob":"00"}}`, uint8(0), uint8(2))
	f.Add(`{"a":[1,{"x":"]"}],"b":"\"}"}`, uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, image string, p1, p2 uint8) {
		var members []json.RawMessage
		dec := json.NewDecoder(bytes.NewReader([]byte(image)))
		dec.UseNumber()
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(image), &obj) != nil || !bytes.HasPrefix(bytes.TrimSpace([]byte(image)), []byte("{")) {
			return
		}
		// Member order: decode token by token.
		if _, err := dec.Token(); err != nil {
			return
		}
		var keys []string
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return
			}
			var v json.RawMessage
			if dec.Decode(&v) != nil {
				return
			}
			keys = append(keys, k.(string))
			members = append(members, v)
		}
		if len(members) == 0 {
			return
		}
		i, j := int(p1)%len(members), int(p2)%len(members)
		pos := []byte("[" + itoa(i) + "," + itoa(j) + "]")
		got, err := keyFromImage(nil, pos, []byte(image))
		if err != nil {
			t.Fatalf("keyFromImage(%s, %q): %v", pos, image, err)
		}
		var back []json.RawMessage
		d2 := json.NewDecoder(bytes.NewReader(got))
		if _, err := d2.Token(); err != nil {
			t.Fatalf("key %q is not JSON: %v", got, err)
		}
		var gotKeys []string
		for d2.More() {
			k, err := d2.Token()
			if err != nil {
				t.Fatalf("key %q: %v", got, err)
			}
			var v json.RawMessage
			if err := d2.Decode(&v); err != nil {
				t.Fatalf("key %q: %v", got, err)
			}
			gotKeys = append(gotKeys, k.(string))
			back = append(back, v)
		}
		if len(back) != 2 || gotKeys[0] != keys[i] || gotKeys[1] != keys[j] ||
			!bytes.Equal(back[0], members[i]) || !bytes.Equal(back[1], members[j]) {
			t.Fatalf("key %s from %s at %s", got, image, pos)
		}
	})
}

func itoa(i int) string {
	return string(rune('0'+i/100)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}
