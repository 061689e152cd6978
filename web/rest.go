package web

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/sqlws/sqlws/crud"
	"github.com/sqlws/sqlws/errors"
	"github.com/sqlws/sqlws/filter"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
	"github.com/sqlws/sqlws/query"
)

// REST limits of GET /api/changes. A limit above maxChangesLimit is clamped.
const (
	defaultChangesLimit = 1000
	maxChangesLimit     = 10000
	changesMaxBytes     = 4 << 20
)

// api serves the REST routes under /api (docs/rest.md).
type api struct {
	db        *crud.DB
	bodyLimit int64
	log       *slog.Logger
	authOn    bool // every request must carry an access (security.require)
}

// mount registers the REST routes.
func (a *api) mount(r chi.Router) {
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, errors.WithCode(errors.NotFound, errors.CodeNotFound, "no such route: %s", errors.Clip(r.URL.Path)))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeErrorBody(w, http.StatusMethodNotAllowed, errors.CodeMethodNotAllowed, "method "+r.Method+" is not allowed here")
	})
	r.Get("/tables", a.listTables)
	r.Get("/tables/{table}", a.getTable)
	r.Get("/tables/{table}/rows", a.listRows)
	r.Post("/tables/{table}/rows", a.createRow)
	r.Get("/tables/{table}/rows/{key}", a.getRow)
	r.Patch("/tables/{table}/rows/{key}", a.updateRow)
	r.Delete("/tables/{table}/rows/{key}", a.deleteRow)
	r.Get("/changes", a.changes)
	r.Get("/openapi.json", a.openAPI)
}

func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, r, a.log, err)
}

// ---------------------------------------------------------------------------
// Request parsing

// pathParam returns a route parameter percent-decoded. chi matches against the raw
// (still escaped) path when the request's path has escapes that decoding would lose
// (%2F, %2C), and against the decoded path otherwise.
func pathParam(r *http.Request, name string) (string, error) {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v, nil
	}
	u, err := url.PathUnescape(v)
	if err != nil {
		return "", errors.WithCode(errors.Invalid, errors.CodeBadRequest, "malformed percent-encoding in the path")
	}
	return u, nil
}

// table resolves the {table} parameter to a tracked table.
func (a *api) table(r *http.Request) (models.Table, error) {
	name, err := pathParam(r, "table")
	if err != nil {
		return models.Table{}, err
	}
	t, ok := a.db.Table(name)
	if !ok {
		return t, errors.WithCode(errors.NotFound, errors.CodeUnknownTable, "unknown table %q", errors.Clip(name))
	}
	return t, nil
}

// keyParts splits the {key} parameter: one value for a single-column key (a comma in
// it is part of the value), otherwise comma-separated values in key order, each
// percent-encoded.
func keyParts(r *http.Request, t models.Table) ([]string, error) {
	raw := chi.URLParam(r, "key")
	var parts []string
	if len(t.KeyColumns()) == 1 {
		parts = []string{raw}
	} else {
		// When the path has no escapes that decoding loses, RawPath is empty and chi
		// gives the decoded value; a comma in it is then a literal separator, because an
		// encoded %2C would have kept RawPath.
		parts = strings.Split(raw, ",")
	}
	if r.URL.RawPath != "" {
		for i, p := range parts {
			u, err := url.PathUnescape(p)
			if err != nil {
				return nil, errors.WithCode(errors.Invalid, errors.CodeBadKey, "malformed percent-encoding in the key")
			}
			parts[i] = u
		}
	}
	return parts, nil
}

// urlQuery parses the raw query string, refusing malformed escapes rather than dropping
// them as URL.Query does.
func urlQuery(r *http.Request) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errors.WithCode(errors.Invalid, errors.CodeBadRequest, "malformed query string")
	}
	return v, nil
}

// requireJSON refuses a body that is not declared as JSON (application/json or
// application/*+json, charset utf-8 if given).
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil ||
		!(mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return errors.WithCode(errors.Unsupported, errors.CodeUnsupportedMediaType, "Content-Type must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return errors.WithCode(errors.Unsupported, errors.CodeUnsupportedMediaType, "the JSON body must be UTF-8")
	}
	return nil
}

// body reads a JSON row body: checks the media type, enforces the size limit and
// decodes it.
func (a *api) body(w http.ResponseWriter, r *http.Request) (crud.Values, error) {
	if err := requireJSON(r); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.bodyLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errors.WithCode(errors.TooLarge, errors.CodeTooLarge, "the request body exceeds %d bytes", a.bodyLimit)
		}
		return nil, errors.E(errors.Invalid, errors.CodeBadRequest, "cannot read the request body", err)
	}
	return crud.DecodeRow(data)
}

// ---------------------------------------------------------------------------
// Responses

// writeRaw writes an already encoded JSON body.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// appendRaw appends a raw JSON value, null if empty.
func appendRaw(b []byte, raw []byte) []byte {
	if len(raw) == 0 {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

// writeRow writes {"row":…,"seq":N}. Rows come from SQLite already encoded, so they
// are copied, not decoded and re-encoded (which would lose nothing but cost time).
func writeRow(w http.ResponseWriter, status int, res crud.RowResult) {
	b := make([]byte, 0, len(res.Row)+32)
	b = append(b, `{"row":`...)
	b = appendRaw(b, res.Row)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, res.Seq, 10)
	b = append(b, "}\n"...)
	writeRaw(w, status, b)
}

// ---------------------------------------------------------------------------
// Handlers

// tableJSON is a table's schema as the API shows it.
type tableJSON struct {
	models.Table
	RowCount *int64 `json:"row_count,omitempty"`
}

func (a *api) listTables(w http.ResponseWriter, r *http.Request) {
	acc, err := a.access(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	infos, err := a.db.VisibleTableInfos(r.Context(), func(table string) (crud.Rule, bool) {
		d := acc.Read(table)
		return crudRule(d), d.Allowed
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]tableJSON, len(infos))
	for i := range infos {
		out[i] = tableJSON{Table: infos[i].Table, RowCount: &infos[i].RowCount}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tables": out})
}

func (a *api) getTable(w http.ResponseWriter, r *http.Request) {
	t, err := a.table(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.readGuard(r, t.Name); err != nil {
		a.fail(w, r, err)
		return
	}
	if t.PrimaryKey == nil {
		t.PrimaryKey = []string{}
	}
	writeJSON(w, http.StatusOK, tableJSON{Table: t})
}

func (a *api) listRows(w http.ResponseWriter, r *http.Request) {
	t, err := a.table(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := urlQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := query.ParseQuery(v)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	g, err := a.readGuard(r, t.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page, err := a.db.With(g).ListRows(r.Context(), t.Name, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	n := 64
	for _, row := range page.Rows {
		n += len(row) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"rows":[`...)
	for i, row := range page.Rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, row...)
	}
	b = append(b, `],"next":`...)
	if page.Next == "" {
		b = append(b, "null"...)
	} else {
		b = models.AppendJSONString(b, page.Next)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, page.Seq, 10)
	b = append(b, "}\n"...)
	writeRaw(w, http.StatusOK, b)
}

// row resolves {table} and {key}.
func (a *api) row(r *http.Request) (models.Table, []string, error) {
	t, err := a.table(r)
	if err != nil {
		return t, nil, err
	}
	key, err := keyParts(r, t)
	return t, key, err
}

func (a *api) getRow(w http.ResponseWriter, r *http.Request) {
	t, key, err := a.row(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	g, err := a.readGuard(r, t.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.db.With(g).GetRow(r.Context(), t.Name, key)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeRow(w, http.StatusOK, res)
}

func (a *api) createRow(w http.ResponseWriter, r *http.Request) {
	t, err := a.table(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	g, err := a.writeGuard(r, t.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	vals, err := a.body(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.db.With(g).CreateRow(r.Context(), t.Name, vals)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeRow(w, http.StatusCreated, res)
}

func (a *api) updateRow(w http.ResponseWriter, r *http.Request) {
	t, key, err := a.row(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	g, err := a.writeGuard(r, t.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	vals, err := a.body(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.db.With(g).UpdateRow(r.Context(), t.Name, key, vals)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeRow(w, http.StatusOK, res)
}

func (a *api) deleteRow(w http.ResponseWriter, r *http.Request) {
	t, key, err := a.row(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	g, err := a.writeGuard(r, t.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	seq, err := a.db.With(g).DeleteRow(r.Context(), t.Name, key)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	b := append([]byte(`{"seq":`), strconv.FormatInt(seq, 10)...)
	writeRaw(w, http.StatusOK, append(b, "}\n"...))
}

// changes serves GET /api/changes?since=&limit=[&stream=][&table=&where=&select=]:
// the change records after since, in seq order, exactly as the WebSocket sends them
// (with table, where and select, as a filtered subscription receives them); next is
// the since of the following page, which a filter may leave with no records. When the records after
// since cannot all be delivered (pruned by retention, since beyond the head, another
// stream) it answers 410 with the reason as the code, the HTTP form of a reset.
func (a *api) changes(w http.ResponseWriter, r *http.Request) {
	acc, err := a.access(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := urlQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var since int64
	if s := v.Get("since"); s != "" {
		since, err = strconv.ParseInt(s, 10, 64)
		if err != nil || since < 0 {
			a.fail(w, r, errors.WithCode(errors.Invalid, errors.CodeBadRequest, "since must be an integer ≥ 0"))
			return
		}
	}
	limit := defaultChangesLimit
	if s := v.Get("limit"); s != "" {
		if limit, err = query.ParseLimit(s, maxChangesLimit); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	table, where, sel := v.Get("table"), v.Get("where"), v.Get("select")
	if (where != "" || sel != "") && table == "" {
		a.fail(w, r, errors.WithCode(errors.Invalid, errors.CodeBadRequest, "where and select need table"))
		return
	}
	stream := a.db.StreamID()
	p, err := a.db.ChangesSince(r.Context(), since, limit, changesMaxBytes)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	views := &changeViews{db: a.db, acc: acc, table: table, where: where, sel: sel, head: p.Head}
	if table != "" {
		if _, err := views.view(table); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	reason := protocol.ResetReason(stream, v.Get("stream"), models.Position{Head: p.Head, Oldest: p.Oldest}, since)
	if reason == "" && p.Gap && len(p.Changes) == 0 {
		reason = protocol.ResetPruned // a hole right after since: those changes are gone
	}
	if reason != "" {
		a.gone(w, reason)
		return
	}
	n := 96
	for _, c := range p.Changes {
		n += len(c.JSON) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"changes":[`...)
	first := true
	next := since // the seq to ask for the next page after: the last one examined
	for _, c := range p.Changes {
		next = c.Seq
		if c.JSON == nil {
			continue // a mark: it holds a seq, it is no change
		}
		view, err := views.view(c.Table)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		rec := c.JSON
		if view.skip {
			continue
		}
		if view.f != nil {
			var res filter.Result
			if rec, res = view.f.Apply(filter.NewChange(c)); res != filter.Deliver {
				continue
			}
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, rec...)
	}
	b = append(b, `],"next":`...)
	b = strconv.AppendInt(b, next, 10)
	b = append(b, `,"head":`...)
	b = strconv.AppendInt(b, p.Head, 10)
	b = append(b, `,"oldest":`...)
	b = strconv.AppendInt(b, p.Oldest, 10)
	b = append(b, `,"stream":`...)
	b = models.AppendJSONString(b, stream)
	b = append(b, "}\n"...)
	writeRaw(w, http.StatusOK, b)
}

// gone answers 410 with a reset reason as the error code: the HTTP form of a reset.
func (a *api) gone(w http.ResponseWriter, reason string) {
	writeErrorBody(w, http.StatusGone, errors.Code(reason), protocol.ResetMessage(reason))
}

func (a *api) openAPI(w http.ResponseWriter, r *http.Request) {
	acc, err := a.access(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	tables := a.db.Tables()
	readable := tables[:0:0]
	for _, t := range tables {
		if acc.Read(t.Name).Allowed {
			readable = append(readable, t)
		}
	}
	doc := openAPIDoc(readable)
	if a.authOn {
		// Generated clients then know to send the token.
		if comp, ok := doc["components"].(obj); ok {
			comp["securitySchemes"] = obj{"bearer": obj{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
			doc["security"] = []any{obj{"bearer": []string{}}}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeRaw(w, http.StatusOK, buf.Bytes())
}
