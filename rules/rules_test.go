package rules

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/query"
)

const example = `{"tables": {
  "todos":   {"read": "owner=eq.{auth.sub}", "write": "owner=eq.{auth.sub}"},
  "notices": {"read": true},
  "audit":   {"read": false},
  "teams":   {"read": "team=in.({auth.teams})&archived=eq.0"},
  "groups":  {"read": "or=(public.eq.1,owner.eq.{auth.sub})"}
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
	cases := []struct {
		who     *auth.Identity
		table   string
		action  Action
		allowed bool
		nothing bool
		where   string // Decision.Where.String()
	}{
		{alice, "todos", Read, true, false, "owner=eq.alice"},
		{alice, "todos", Write, true, false, "owner=eq.alice"},
		{alice, "notices", Read, true, false, ""},
		{alice, "notices", Write, false, false, ""}, // the default's write
		{alice, "audit", Read, false, false, ""},
		{alice, "unnamed", Read, false, false, ""},
		{alice, "teams", Read, true, false, "archived=eq.0&team=in.%28red%2C7%29"},
		{alice, "groups", Read, true, false, "or=%28public.eq.1%2Cowner.eq.alice%29"},
		{id(`{"sub":"1) OR (1=1"}`), "todos", Read, true, false, "owner=eq.1%29+OR+%281%3D1"},
		{id(`{"sub":42}`), "todos", Read, true, false, "owner=eq.42"},
		{id(`{}`), "todos", Read, true, true, ""},
		{id(`{"sub":null}`), "todos", Read, true, true, ""},
		{id(`{"sub":{"a":1}}`), "todos", Read, true, true, ""},
		{id(`{"sub":["alice"]}`), "todos", Read, true, true, ""}, // an array only in in-lists
		{id(`{}`), "groups", Read, true, true, ""},               // a missing claim anywhere: nothing
		{&auth.Identity{Admin: true}, "audit", Write, true, false, ""},
		{nil, "audit", Read, true, false, ""},
	}
	for _, c := range cases {
		got := s.Decide(c.who, c.table, c.action)
		if got.Allowed != c.allowed || got.Nothing != c.nothing || got.Where.String() != c.where {
			t.Errorf("%v %s %s = %+v (%q), want allowed %v nothing %v where %q", c.who, c.table, c.action, got, got.Where.String(), c.allowed, c.nothing, c.where)
		}
	}
	if s.ReadsUnrestricted() || !AllowAll().ReadsUnrestricted() {
		t.Error("ReadsUnrestricted")
	}
}

// TestClaimsStayValues: whatever a claim holds, it ends up as exactly one filter
// value — in the tree, and in the where string the change feed compiles.
func TestClaimsStayValues(t *testing.T) {
	s, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	for _, claim := range []string{"1) OR (1=1", `a"b`, `x\`, "a,b)", "k&or=(a.eq.1)", "%", "not.eq.1", "in.(1,2)", "é\x00", ""} {
		who := &auth.Identity{Claims: map[string]any{"sub": claim}}
		for _, table := range []string{"todos", "groups"} {
			d := s.Decide(who, table, Read)
			for _, e := range []query.Expr{d.Where, mustParse(t, d.Where.String())} {
				var vals []string
				walk(e, func(f query.Filter) {
					if f.Column == "owner" {
						vals = append(vals, f.Values...)
					}
				})
				if len(vals) != 1 || vals[0] != claim {
					t.Errorf("sub %q in %s: owner values %q (where %q)", claim, table, vals, d.Where.String())
				}
			}
		}
	}
}

func mustParse(t *testing.T, where string) query.Expr {
	t.Helper()
	e, err := query.ParseWhere(where)
	if err != nil {
		t.Fatalf("ParseWhere(%q): %v", where, err)
	}
	return e
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

func TestReadWhere(t *testing.T) {
	s, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAccess(id(`{"sub":"alice"}`), NewLive(s))
	if w, nothing, err := a.ReadWhere("todos", "done=eq.0"); err != nil || nothing || w != "done=eq.0&owner=eq.alice" {
		t.Errorf("todos: %q %v %v", w, nothing, err)
	}
	if w, _, err := a.ReadWhere("notices", "x=eq.1"); err != nil || w != "x=eq.1" {
		t.Errorf("notices: %q %v", w, err)
	}
	if _, _, err := a.ReadWhere("audit", ""); err == nil || !strings.Contains(err.Error(), "do not allow reading") {
		t.Errorf("audit: %v, want forbidden", err)
	}
	if _, nothing, err := NewAccess(id(`{}`), NewLive(s)).ReadWhere("todos", ""); err != nil || !nothing {
		t.Errorf("no sub: nothing %v, %v", nothing, err)
	}
}
