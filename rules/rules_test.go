package rules

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/query"
)

const example = `{"tables": {
  "todos":   {"read": "owner=eq.{auth.sub}", "write": "owner=eq.{auth.sub}"},
  "notices": {"read": true},
  "audit":   {"read": false},
  "teams":   {"read": "team=in.({auth.teams})&archived=eq.0"}
}, "default": {"read": false, "write": false}}`

func id(claims string) *auth.Identity {
	m := map[string]any{}
	d := json.NewDecoder(strings.NewReader(claims))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		panic(err)
	}
	i := &auth.Identity{Claims: m}
	i.Subject, _ = m["sub"].(string)
	return i
}

func TestDecide(t *testing.T) {
	s, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	alice := id(`{"sub":"alice","teams":["red",7]}`)
	f := func(col string, op query.Op, vals ...string) query.Filter {
		return query.Filter{Column: col, Op: op, Values: vals}
	}
	cases := []struct {
		who    *auth.Identity
		table  string
		action Action
		want   Decision
	}{
		{alice, "todos", Read, Decision{Allowed: true, Filters: []query.Filter{f("owner", query.OpEq, "alice")}}},
		{alice, "todos", Write, Decision{Allowed: true, Filters: []query.Filter{f("owner", query.OpEq, "alice")}}},
		{alice, "notices", Read, Decision{Allowed: true}},
		{alice, "notices", Write, Decision{}}, // the default's write
		{alice, "audit", Read, Decision{}},
		{alice, "unnamed", Read, Decision{}},
		{alice, "teams", Read, Decision{Allowed: true, Filters: []query.Filter{f("archived", query.OpEq, "0"), f("team", query.OpIn, "red", "7")}}},
		{id(`{"sub":"1) OR (1=1"}`), "todos", Read, Decision{Allowed: true, Filters: []query.Filter{f("owner", query.OpEq, "1) OR (1=1")}}},
		{id(`{"sub":42}`), "todos", Read, Decision{Allowed: true, Filters: []query.Filter{f("owner", query.OpEq, "42")}}},
		{id(`{}`), "todos", Read, Decision{Allowed: true, Nothing: true}},
		{id(`{"sub":null}`), "todos", Read, Decision{Allowed: true, Nothing: true}},
		{id(`{"sub":{"a":1}}`), "todos", Read, Decision{Allowed: true, Nothing: true}},
		{id(`{"sub":["alice"]}`), "todos", Read, Decision{Allowed: true, Nothing: true}}, // an array only in in-lists
		{&auth.Identity{Admin: true}, "audit", Write, Decision{Allowed: true}},
		{nil, "audit", Read, Decision{Allowed: true}},
	}
	for _, c := range cases {
		got := s.Decide(c.who, c.table, c.action)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v %s %s = %+v, want %+v", c.who, c.table, c.action, got, c.want)
		}
	}
	if s.ReadsUnrestricted() || !AllowAll().ReadsUnrestricted() {
		t.Error("ReadsUnrestricted")
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{`nope`, "not a rules file"},
		{`{"tables":{},"extra":1}`, "unknown field"},
		{`{"tables":{"t":{"read":1}}}`, `table "t": read: want true, false or a filter`},
		{`{"tables":{"t":{"read":""}}}`, "empty filter"},
		{`{"tables":{"t":{"read":"owner=zz.1"}}}`, "unknown operator"},
		{`{"tables":{"t":{"write":"owner=eq.x{auth.sub}"}}}`, `table "t": write: `},
		{`{"tables":{"t":{"read":"owner=like.{auth.sub}"}}}`, "like cannot take a placeholder"},
		{`{"tables":{"t":{"read":"limit=1"}}}`, "not a filter"},
		{`{"default":{"read":"a=eq.%zz"}}`, "default: read: "},
		{`{"tables":{}} {}`, "text after"},
	} {
		_, err := Parse([]byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s) = %v, want an error with %q", c.file, err, c.want)
		}
	}
}

func TestLiveAccess(t *testing.T) {
	closed, _ := Parse([]byte(`{}`))
	l := NewLive(AllowAll())
	a := NewAccess(id(`{"sub":"a"}`), l)
	if !a.Read("t").Allowed {
		t.Fatal("AllowAll refused")
	}
	l.Store(closed)
	if a.Read("t").Allowed || a.Write("t").Allowed {
		t.Error("a reload did not apply to an existing Access")
	}
	var none *Access
	if !none.Read("t").AllRows() {
		t.Error("a nil Access (no authentication) must allow everything")
	}
}
