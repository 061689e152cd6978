// Package rules decides what a verified identity may read and write: it loads and
// validates the rules file (--rules, JSON), keeps the rules in force (swapped whole
// on reload, so a request sees one version), and answers, per table, whether a
// token may read or write it and under which row condition.
//
// A rule is true (any valid token), false (admins only) or a filter in REST's where
// grammar (owner=eq.{auth.sub}&or=(public.eq.1,team.in.({auth.teams}))) whose values
// may be {auth.CLAIM} placeholders. The rule is parsed once, when the file loads; a
// placeholder is then replaced by the claim's value in the parsed tree — a filter
// value, bound as an SQL parameter, never text that is parsed — and a claim the token
// lacks makes the rule match no row.
package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/query"
)

// Action is what a rule governs.
type Action string

// The actions a rule can govern.
const (
	Read  Action = "read"
	Write Action = "write"
)

// kind is what a rule is.
type kind uint8

const (
	deny   kind = iota // false: admins only
	allow              // true: any valid token, every row
	filter             // rows matching the filters
)

// Rule is one parsed rule.
type Rule struct {
	kind  kind
	where query.Expr // kind filter; leaf values may be placeholders
	text  string     // as written, for messages
}

// String is the rule as the file wrote it.
func (r Rule) String() string {
	switch r.kind {
	case allow:
		return "true"
	case deny:
		return "false"
	}
	return r.text
}

// Where returns a filter rule's condition as written (placeholders unsubstituted),
// the empty Expr for true and false.
func (r Rule) Where() query.Expr { return r.where }

// TableRules are the rules of one table.
type TableRules struct {
	Read, Write Rule
}

// Set is one version of the rules. It is immutable.
type Set struct {
	tables map[string]TableRules
	def    TableRules
}

// AllowAll is the rules without a rules file: any valid token may read and write
// every row of every table.
func AllowAll() *Set {
	return &Set{tables: map[string]TableRules{}, def: TableRules{Read: Rule{kind: allow}, Write: Rule{kind: allow}}}
}

// file is the rules file's JSON shape.
type file struct {
	Tables  map[string]tableJSON `json:"tables"`
	Default *tableJSON           `json:"default"`
}

type tableJSON struct {
	Read  json.RawMessage `json:"read"`
	Write json.RawMessage `json:"write"`
}

// Load reads and parses the rules file at path.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse parses a rules file. Every problem is an error that names the table and
// action it is in. What is not said is closed: a missing default is false for both
// actions, and a table's missing action takes the default's rule.
func Parse(data []byte) (*Set, error) {
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("rules: not a rules file: %v (want {\"tables\":{\"T\":{\"read\":…,\"write\":…}},\"default\":{…}})", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("rules: text after the JSON object")
	}
	s := &Set{tables: map[string]TableRules{}, def: TableRules{Read: Rule{kind: deny}, Write: Rule{kind: deny}}}
	if f.Default != nil {
		var err error
		if s.def, err = parseTable("default", *f.Default, s.def); err != nil {
			return nil, err
		}
	}
	for name, t := range f.Tables {
		if name == "" {
			return nil, fmt.Errorf("rules: a table with an empty name")
		}
		tr, err := parseTable(fmt.Sprintf("table %q", name), t, s.def)
		if err != nil {
			return nil, err
		}
		s.tables[name] = tr
	}
	return s, nil
}

func parseTable(where string, t tableJSON, def TableRules) (TableRules, error) {
	out := def
	var err error
	if t.Read != nil {
		if out.Read, err = parseRule(t.Read); err != nil {
			return out, fmt.Errorf("rules: %s: read: %w", where, err)
		}
	}
	if t.Write != nil {
		if out.Write, err = parseRule(t.Write); err != nil {
			return out, fmt.Errorf("rules: %s: write: %w", where, err)
		}
	}
	return out, nil
}

// placeholder is a whole filter value naming a claim.
var placeholder = regexp.MustCompile(`^\{auth\.([A-Za-z0-9_:.-]+)\}$`)

func parseRule(raw json.RawMessage) (Rule, error) {
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		if b {
			return Rule{kind: allow}, nil
		}
		return Rule{kind: deny}, nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		return Rule{}, fmt.Errorf("want true, false or a filter string, got %s", clip(string(raw)))
	}
	if strings.TrimSpace(text) == "" {
		return Rule{}, fmt.Errorf("an empty filter (write true to allow every row)")
	}
	e, err := query.ParseWhere(text)
	if err != nil {
		_, _, msg := errors.Public(err)
		return Rule{}, fmt.Errorf("%q: %s", clip(text), msg)
	}
	if e.IsEmpty() {
		return Rule{}, fmt.Errorf("%q: no condition (write true to allow every row)", clip(text))
	}
	var bad error
	walk(e, func(f query.Filter) {
		for _, val := range f.Values {
			if bad != nil || !strings.Contains(val, "{auth.") {
				continue
			}
			if !placeholder.MatchString(val) {
				bad = fmt.Errorf("%q: a placeholder must be a whole value, {auth.CLAIM}: %q", clip(text), clip(val))
			} else if f.Op == query.OpLike {
				// A claim's % or _ would be a wildcard in a LIKE pattern: a token could
				// widen its own rule.
				bad = fmt.Errorf("%q: like cannot take a placeholder (its wildcards would come from the token)", clip(text))
			}
		}
	})
	if bad != nil {
		return Rule{}, bad
	}
	return Rule{kind: filter, where: e, text: text}, nil
}

// walk calls fn with every filter of e.
func walk(e query.Expr, fn func(query.Filter)) {
	if e.Kind == query.ExprFilter {
		fn(e.Filter)
		return
	}
	for _, c := range e.Children {
		walk(c, fn)
	}
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// Table returns the rules of table (the default's when the file does not name it).
func (s *Set) Table(table string) TableRules {
	if t, ok := s.tables[table]; ok {
		return t
	}
	return s.def
}

// Named returns the tables the file names, sorted.
func (s *Set) Named() []string {
	out := make([]string, 0, len(s.tables))
	for t := range s.tables {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Check calls check with every filter rule's condition (placeholders unsubstituted)
// for each table the file names, and returns the first error, naming the table
// and action. check is how the caller makes sure the columns exist; it is not
// called for tables exists reports missing (they may be created later).
func (s *Set) Check(exists func(table string) bool, check func(table string, where query.Expr) error) error {
	for _, name := range s.Named() {
		if !exists(name) {
			continue
		}
		t := s.tables[name]
		for _, a := range []struct {
			action Action
			rule   Rule
		}{{Read, t.Read}, {Write, t.Write}} {
			if a.rule.kind != filter {
				continue
			}
			if err := check(name, a.rule.where); err != nil {
				return fmt.Errorf("rules: table %q: %s: %q: %w", name, a.action, a.rule.text, err)
			}
		}
	}
	return nil
}

// ReadsUnrestricted reports whether every table is readable in full by any valid
// token: no read rule anywhere is false or a filter.
func (s *Set) ReadsUnrestricted() bool {
	if s.def.Read.kind != allow {
		return false
	}
	for _, t := range s.tables {
		if t.Read.kind != allow {
			return false
		}
	}
	return true
}

// Decision is what an identity may do with one table for one action.
type Decision struct {
	// Allowed is false when the table is closed to the identity (the rule is
	// false): a read or write of it is forbidden.
	Allowed bool
	// Where is the condition a row must meet, with the identity's claims in place
	// of the placeholders; empty (IsEmpty) when every row qualifies.
	Where query.Expr
	// Nothing is set when the rule needs a claim the token does not have: the table
	// is open, but no row qualifies.
	Nothing bool
}

// AllRows reports whether d allows every row of the table.
func (d Decision) AllRows() bool { return d.Allowed && !d.Nothing && d.Where.IsEmpty() }

// Decide is what id may do with table for action under s. Admins may do anything;
// a nil id (no authentication configured) too.
func (s *Set) Decide(id *auth.Identity, table string, action Action) Decision {
	if id == nil || id.Admin {
		return Decision{Allowed: true}
	}
	t := s.Table(table)
	r := t.Read
	if action == Write {
		r = t.Write
	}
	switch r.kind {
	case allow:
		return Decision{Allowed: true}
	case deny:
		return Decision{}
	}
	where, ok := substitute(r.where, id)
	if !ok {
		return Decision{Allowed: true, Nothing: true}
	}
	return Decision{Allowed: true, Where: where}
}

// substitute returns a copy of e with every placeholder replaced by id's claim, or
// false if a claim is missing. The tree is copied, never re-parsed: a claim's text
// is a value whatever characters it holds.
func substitute(e query.Expr, id *auth.Identity) (query.Expr, bool) {
	out := query.Expr{Kind: e.Kind}
	if e.Kind == query.ExprFilter {
		f := e.Filter
		nf := query.Filter{Column: f.Column, Op: f.Op, Values: make([]string, 0, len(f.Values))}
		for _, v := range f.Values {
			m := placeholder.FindStringSubmatch(v)
			if m == nil {
				nf.Values = append(nf.Values, v)
				continue
			}
			vals, ok := claimValues(id, m[1], f.Op == query.OpIn)
			if !ok {
				return out, false
			}
			nf.Values = append(nf.Values, vals...)
		}
		out.Filter = nf
		return out, true
	}
	out.Children = make([]query.Expr, len(e.Children))
	for i, c := range e.Children {
		var ok bool
		if out.Children[i], ok = substitute(c, id); !ok {
			return out, false
		}
	}
	return out, true
}

// claimValues is the text of claim name, one value; in an in-list an array claim
// gives each of its scalar elements. A missing, null, object or (outside in) array
// claim has none: ok is false, and the rule matches nothing.
func claimValues(id *auth.Identity, name string, list bool) ([]string, bool) {
	v, ok := id.Claim(name)
	if !ok {
		return nil, false
	}
	if arr, isArr := v.([]any); isArr {
		if !list {
			return nil, false
		}
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			s, ok := auth.ClaimText(e)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	s, ok := auth.ClaimText(v)
	if !ok {
		return nil, false
	}
	return []string{s}, true
}

// Live holds the rules in force; Store swaps them whole, so a request that loaded
// them once sees one version throughout.
type Live struct {
	p atomic.Pointer[Set]
}

// NewLive returns a Live holding s.
func NewLive(s *Set) *Live {
	l := &Live{}
	l.p.Store(s)
	return l
}

// Load returns the rules in force.
func (l *Live) Load() *Set { return l.p.Load() }

// Store puts s in force.
func (l *Live) Store(s *Set) { l.p.Store(s) }

// Access is one identity under the rules in force: what a request or a WebSocket
// connection consults before it reads or writes a table. Each call reads the rules
// in force, so a reload applies to the next call.
type Access struct {
	// ID is the verified identity; nil when authentication is off (everything allowed).
	ID    *auth.Identity
	rules *Live
}

// NewAccess returns id's access under rules (nil rules: AllowAll).
func NewAccess(id *auth.Identity, rules *Live) *Access {
	if rules == nil {
		rules = NewLive(AllowAll())
	}
	return &Access{ID: id, rules: rules}
}

// InForce is the rule set in force now: a caller that granted something under one set
// (a live subscription) compares it with the current one to know when to look again.
func (a *Access) InForce() *Set {
	if a == nil {
		return nil
	}
	return a.rules.Load()
}

// With is id's access under the same live rules: a connection whose token was
// replaced in place.
func (a *Access) With(id *auth.Identity) *Access { return &Access{ID: id, rules: a.rules} }

// Admin reports whether the rules do not apply: an admin token, or no authentication.
func (a *Access) Admin() bool { return a == nil || a.ID == nil || a.ID.Admin }

// Read is what the identity may read of table.
func (a *Access) Read(table string) Decision {
	if a.Admin() {
		return Decision{Allowed: true}
	}
	return a.rules.Load().Decide(a.ID, table, Read)
}

// Write is what the identity may write to table.
func (a *Access) Write(table string) Decision {
	if a.Admin() {
		return Decision{Allowed: true}
	}
	return a.rules.Load().Decide(a.ID, table, Write)
}

// ReadWhere is the where a read of table's changes or rows by this identity must
// use: the caller's own where (REST's where grammar; "" for none) ANDed with the
// read rule, as one where string for filter.Compile. It is a forbidden error when
// the table is closed to the identity, and nothing is set when no row can qualify
// (a claim the rule needs is missing): the caller then delivers nothing.
//
// This is the hook for the stream: a subscription to table with where w compiles
// filter.Compile(t, ReadWhere(table, w), select, head) instead, so the rule and the
// client's filter are one filter and its moved in/out rules apply to both.
func (a *Access) ReadWhere(table, where string) (combined string, nothing bool, err error) {
	d := a.Read(table)
	switch {
	case !d.Allowed:
		return "", false, errors.WithCode(errors.Forbidden, errors.CodeForbidden, "the access rules do not allow reading table %q", errors.Clip(table))
	case d.Nothing:
		return "", true, nil
	case d.Where.IsEmpty():
		return where, false, nil
	}
	// The rule's canonical where string: query.Expr.String quotes every value it
	// must, so a claim in it parses back as the same single value (TestClaimsStayValues).
	rule := d.Where.String()
	if where == "" {
		return rule, false, nil
	}
	// Pairs joined by & are ANDed, and no pair can reach across an &.
	return where + "&" + rule, false, nil
}

// ReadsUnrestricted reports whether the identity may read every row of every table.
func (a *Access) ReadsUnrestricted() bool {
	return a.Admin() || a.rules.Load().ReadsUnrestricted()
}

type accessKey struct{}

// WithAccess returns ctx carrying a.
func WithAccess(ctx context.Context, a *Access) context.Context {
	return context.WithValue(ctx, accessKey{}, a)
}

// FromContext returns the access a request was given, nil if none. A nil *Access
// allows everything (it is what no authentication means), so callers that require
// authentication must check for nil themselves.
func FromContext(ctx context.Context) *Access {
	if a, ok := ctx.Value(accessKey{}).(*Access); ok && a != nil {
		return a
	}
	return nil
}
