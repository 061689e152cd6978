package protocol_test

import (
	"strings"
	"testing"

	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		msg    string
		id     string // canonical id echoed, "" for none
		errSub string // "" for success
	}{
		{`{"type":"subscribe","id":"a","tables":["t"],"since":3,"stream":"s"}`, `"a"`, ""},
		{`{"type":"subscribe","id":"\u0061"}`, `"a"`, ""},
		{`{"type":"subscribe","id":7}`, `7`, ""},
		{`{"type":"subscribe","id":-7}`, `-7`, ""},
		{`{"type":"subscribe","id":1e400}`, ``, `"id" must be a string or an integer`},
		{`{"type":"subscribe","id":1.5}`, ``, `"id" must be a string or an integer`},
		{`{"type":"subscribe","id":"` + strings.Repeat("x", 300) + `"}`, ``, `longer than 256 bytes`},
		{`{"type":"subscribe","id":` + strings.Repeat("9", 300) + `}`, ``, `longer than 256 bytes`},
		{`{"type":"subscribe","id":"a","tables":[` + strings.Repeat(`"t",`, 1000) + `"t"]}`, `"a"`, `more than 1000 tables`},
		{`{"type":"subscribe","id":"a","since":-1}`, `"a"`, `"since" must be an integer >= 0`},
		{`{"type":"subscribe","id":"a","since":1.5}`, `"a"`, `"since" must be an integer >= 0`},
		{`{"type":"subscribe","id":"a","tables":"t"}`, `"a"`, `"tables" must be an array`},
		{`{"type":"subscribe"}`, ``, `missing "id"`},
		{`{"type":"nope","id":"a"}`, `"a"`, `unknown message type "nope"`},
		{`{"type":"` + strings.Repeat("n", 1000) + `","id":"a"}`, `"a"`, `…`},
		{`{"id":"a"}`, `"a"`, `missing "type"`},
		{`[1]`, ``, `must be a JSON object`},
		{`{"type":1}`, ``, `field "type" has the wrong type`},
		{`{`, ``, `malformed JSON`},
		{`{"type":"subscribe","id":"a","tables":["t"],"where":"x=eq.1","select":"x"}`, `"a"`, ""},
		{`{"type":"subscribe","id":"a","where":"x=eq.1"}`, `"a"`, `need "tables" naming exactly one table`},
		{`{"type":"subscribe","id":"a","tables":["t","u"],"select":"x"}`, `"a"`, `need "tables" naming exactly one table`},
		{`{"type":"subscribe","id":"a","tables":["t"],"where":1}`, `"a"`, `"where" must be a string`},
		{`{"type":"subscribe","id":"a","tables":["t"],"where":"` + strings.Repeat("x", 17<<10) + `"}`, `"a"`, `"where" is longer than`},
	} {
		r, err := protocol.Parse([]byte(tc.msg))
		if string(r.ID) != tc.id {
			t.Errorf("%.80s: id %s, want %s", tc.msg, r.ID, tc.id)
		}
		switch {
		case tc.errSub == "" && err != nil:
			t.Errorf("%.80s: %v", tc.msg, err)
		case tc.errSub != "" && (err == nil || !strings.Contains(err.Error(), tc.errSub) || errors.KindOf(err) != errors.Invalid):
			t.Errorf("%.80s: error %v, want an invalid-request error containing %q", tc.msg, err, tc.errSub)
		}
	}
}

func TestResetReason(t *testing.T) {
	p := models.Position{Head: 100, Oldest: 50}
	for _, tc := range []struct {
		client string
		since  int64
		want   string
	}{
		{"", 100, ""}, {"", 49, ""}, {"s", 70, ""},
		{"", 101, protocol.ResetFuture}, {"", 48, protocol.ResetPruned}, {"other", 70, protocol.ResetStream},
	} {
		if got := protocol.ResetReason("s", tc.client, p, tc.since); got != tc.want {
			t.Errorf("stream %q since %d: %q, want %q", tc.client, tc.since, got, tc.want)
		}
	}
}
