package web

import (
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/sqlws/sqlws/auth"
	"github.com/sqlws/sqlws/crud"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/filter"
	"github.com/sqlws/sqlws/rules"
)

// security is the authentication in front of the data routes (/api/…, /ws): it
// verifies the request's token and hands the handlers its identity and its access
// under the rules in force, through the request's context.
type security struct {
	verifier *auth.Verifier // nil: authentication off
	rules    *rules.Live
	// wsRules is set when the WebSocket handler enforces the rules itself (see
	// Config.WebSocketEnforcesRules).
	wsRules bool
	log     *slog.Logger
}

// wsPath is the WebSocket route, the one route that takes ?access_token=.
const wsPath = "/ws"

// require is the middleware of every data route. A request without a valid token is
// answered 401 with WWW-Authenticate (RFC 6750) before its handler runs, so before
// any WebSocket upgrade. An access_token query parameter is removed from the
// request whether or not authentication is on, so that no handler, log line or
// error downstream can repeat it.
func (s *security) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var tok string
		isWS := r.URL.Path == wsPath
		if isWS {
			if raw := r.URL.RawQuery; raw != "" {
				r = r.Clone(r.Context()) // the URL is shared with the middleware above
				tok = auth.TakeQueryToken(r.URL)
				r.RequestURI = r.URL.RequestURI()
			}
		}
		if s.verifier == nil {
			next.ServeHTTP(w, r)
			return
		}
		if h := auth.FromHeader(r.Header); h != "" {
			tok = h
		}
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sqlws"`)
			writeError(w, r, s.log, errors.WithCode(errors.Unauthorized, errors.CodeUnauthorized,
				"an access token is required: send Authorization: Bearer TOKEN (a WebSocket may use ?access_token=TOKEN)"))
			return
		}
		id, err := s.verifier.Verify(tok)
		if err != nil {
			_, _, msg := errors.Public(err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sqlws", error="invalid_token", error_description="`+msg+`"`)
			writeError(w, r, s.log, err)
			return
		}
		acc := rules.NewAccess(id, s.rules)
		if isWS && !s.wsRules && !acc.ReadsUnrestricted() {
			// Until subscriptions apply the rules, a token the rules restrict must not
			// get a stream that would show it every row.
			writeError(w, r, s.log, errors.WithCode(errors.Forbidden, errors.CodeForbidden,
				"the access rules restrict this token's reads, and the WebSocket cannot apply them yet: read over REST"))
			return
		}
		ctx := rules.WithAccess(auth.WithIdentity(r.Context(), id), acc)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// access returns the request's access: nil (everything allowed) when authentication
// is off. With authentication on, a request that reached a handler without one was
// routed around require: it is refused rather than served unchecked.
func (a *api) access(r *http.Request) (*rules.Access, error) {
	acc := rules.FromContext(r.Context())
	if acc == nil && a.authOn {
		return nil, errors.WithCode(errors.Unauthorized, errors.CodeUnauthorized, "an access token is required")
	}
	return acc, nil
}

// readGuard is what the request may read of table: forbidden if nothing.
func (a *api) readGuard(r *http.Request, table string) (crud.Guard, error) {
	acc, err := a.access(r)
	if err != nil {
		return crud.Guard{}, err
	}
	d := acc.Read(table)
	if !d.Allowed {
		return crud.Guard{}, errors.WithCode(errors.Forbidden, errors.CodeForbidden, "the access rules do not allow reading table %q", errors.Clip(table))
	}
	return crud.Guard{Read: crudRule(d)}, nil
}

// writeGuard is what the request may write to table, and read of what it wrote:
// forbidden if it may write nothing. A table it may not read at all has a read
// rule no row meets: its writes answer rows as null, and updates and deletes find
// no row.
func (a *api) writeGuard(r *http.Request, table string) (crud.Guard, error) {
	acc, err := a.access(r)
	if err != nil {
		return crud.Guard{}, err
	}
	wd := acc.Write(table)
	if !wd.Allowed {
		return crud.Guard{}, errors.WithCode(errors.Forbidden, errors.CodeForbidden, "the access rules do not allow writing table %q", errors.Clip(table))
	}
	g := crud.Guard{Write: crudRule(wd), Read: crud.Rule{Nothing: true}}
	if rd := acc.Read(table); rd.Allowed {
		g.Read = crudRule(rd)
	}
	return g, nil
}

// crudRule is a decision's row condition as crud applies it.
func crudRule(d rules.Decision) crud.Rule {
	return crud.Rule{Where: d.Where, Nothing: d.Nothing}
}

// changeViews decides, table by table, what GET /api/changes shows a request of
// each table's changes: the request's own table, where and select, and its read
// rule. A row rule is ANDed with the request's where into one filter, so a change is
// shown as a filtered subscription with that combined where receives it: an update
// moving a row out of the rule arrives as moved "out" with new null, a delete only
// if the old row was visible, and never an image the rule does not allow.
type changeViews struct {
	db                *crud.DB
	acc               *rules.Access
	table, where, sel string // the request's; table "" for every table
	head              int64  // the page's head, for filter.Compile
	views             map[string]*changeView
}

// changeView is what a request sees of one table's changes: nothing (skip), each
// change as it is (f nil), or what f makes of it.
type changeView struct {
	skip bool
	f    *filter.Filter
}

// view returns the view of table, deciding it on first use. A table the request
// named but may not read is forbidden; other unreadable tables are skipped.
func (cv *changeViews) view(table string) (*changeView, error) {
	if v, ok := cv.views[table]; ok {
		return v, nil
	}
	if cv.views == nil {
		cv.views = map[string]*changeView{}
	}
	v := &changeView{}
	where, sel := "", ""
	switch {
	case cv.table != "" && table != cv.table:
		v.skip = true
	case cv.table != "":
		where, sel = cv.where, cv.sel
		fallthrough
	default:
		combined, nothing, err := cv.acc.ReadWhere(table, where)
		switch {
		case err != nil && cv.table != "":
			return nil, err // the request named a table it may not read
		case err != nil || nothing:
			v.skip = true
		}
		where = combined
		if !v.skip && (where != "" || sel != "") {
			// Compiled against the schema as of the page's head: every change read is
			// at or before it, so a column added since reads as NULL, never as stale.
			f, err := cv.db.Filter(table, where, sel, cv.head)
			switch {
			case err != nil && cv.table == "" && errors.IsKind(err, errors.NotFound):
				v.skip = true // a table dropped since: its rule cannot be applied
			case err != nil:
				return nil, err
			}
			v.f = f
		}
	}
	cv.views[table] = v
	return v, nil
}

// checkHost refuses, before any work, a request whose Host header names a host the
// server does not answer for (hostAllowed), with 403 host_not_allowed. The probes
// are exempt: they carry no data, and orchestrators probe by IP address.
func checkHost(loopback bool, allowed []string, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if !loopback && len(allowed) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || hostAllowed(r.Host, loopback, allowed) {
				next.ServeHTTP(w, r)
				return
			}
			writeError(w, r, log, errors.WithCode(errors.Forbidden, errors.CodeHostNotAllowed,
				"host %q is not served here (see --allowed-hosts)", errors.Clip(r.Host)))
		})
	}
}

// hostAllowed reports whether a Host header value (host[:port]) names a host the
// server answers for: on a loopback bind, a loopback name or address; always, one of
// allowed (exactly, or a subdomain of a "*.domain" pattern), case-insensitively.
func hostAllowed(hostport string, loopback bool, allowed []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if loopback {
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return true // RFC 6761: always the loopback interface
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return true
		}
	}
	for _, a := range allowed {
		a = strings.TrimSuffix(strings.ToLower(a), ".")
		if host == a || strings.HasPrefix(a, "*.") && strings.HasSuffix(host, a[1:]) {
			return true
		}
	}
	return false
}
