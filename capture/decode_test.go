package capture_test

import (
	"encoding/json"
	"math"
	"testing"
	"unicode/utf8"

	"github.com/sqlws/sqlws/capture"
)

func TestAppendRowJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":1}`, `{"a":1}`},
		{`{"a":{"$ldexp":[0.5,2]},"b":"x"}`, `{"a":2,"b":"x"}`},
		{`{"a":{"$ldexp":[0.9999999999999999,1024]}}`, `{"a":1.7976931348623157e+308}`},
		{`{"a":{"$ldexp":[1,-1074]}}`, `{"a":5e-324}`},
		{`{"$ldexp":"not ours"}`, `{"$ldexp":"not ours"}`},
		{`{"a":{"$ldexp":[1,5000]}}`, `{"a":{"$ldexp":[1,5000]}}`}, // would overflow: left alone
		{"{\"a\":\"\xffA\"}", "{\"a\":\"\uFFFDA\"}"},
		// 17 digits, unscaled: the shortest exact decimal, in JavaScript's notation.
		{`[{"$ldexp":[0.10000000000000001,0]},{"$ldexp":[1234567.5,0]},{"$ldexp":[-9.9999999999999995e-08,0]}]`, `[0.1,1234567.5,-1e-7]`},
		{`[{"$ldexp":[1e+21,0]},{"$ldexp":[0.30000000000000004,0]},{"$ldexp":[100000000000000000000,0]}]`, `[1e+21,0.30000000000000004,100000000000000000000]`},
	} {
		got := string(capture.AppendRowJSON(nil, []byte(tc.in)))
		if got != tc.want {
			t.Errorf("AppendRowJSON(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("output %q is not UTF-8", got)
		}
	}
	var v struct{ A float64 }
	json.Unmarshal(capture.AppendRowJSON(nil, []byte(`{"a":{"$ldexp":[0.9999999999999999,1024]}}`)), &v)
	if v.A != math.MaxFloat64 {
		t.Fatalf("max float came back as %v", v.A)
	}
}
