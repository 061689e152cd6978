package web

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/query"
)

// obj is a JSON object in the OpenAPI document.
type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

var schemaNameBad = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// schemaName turns a table name into a unique OpenAPI component name.
func schemaName(table string, used map[string]bool) string {
	base := schemaNameBad.ReplaceAllString(table, "_")
	if base == "" {
		base = "table"
	}
	// Each table takes two names, NAME and NAME_write; both must be free.
	name := "Row_" + base
	for i := 2; used[name] || used[name+"_write"]; i++ {
		name = "Row_" + base + "_" + strconv.Itoa(i)
	}
	used[name], used[name+"_write"] = true, true
	return name
}

// columnSchema maps a column's declared type to a JSON schema by SQLite's affinity
// rules. Only STRICT tables enforce it; other tables may hold any storage class in any
// column, which the description says.
func columnSchema(c models.Column, tbl models.Table) obj {
	var s obj
	switch capture.ColumnAffinity(&c, tbl.Strict) {
	case capture.AffInteger:
		s = obj{"type": "integer", "format": "int64"}
	case capture.AffText:
		s = obj{"type": "string"}
	case capture.AffReal:
		s = obj{"anyOf": []any{obj{"type": "number", "format": "double"}, ref("Infinity")}}
	case capture.AffNumeric:
		s = obj{"type": "number"}
	default: // BLOB affinity: a column declared BLOB holds bytes; no type (or ANY), anything
		if strings.Contains(strings.ToUpper(c.Type), "BLOB") {
			s = ref("Blob")
		} else {
			s = obj{}
		}
	}
	// Key columns of a WITHOUT ROWID table and an INTEGER PRIMARY KEY (the rowid) are
	// never NULL, whatever table_info's notnull says.
	keyNotNull := c.PK > 0 && (tbl.WithoutRowid || len(tbl.PrimaryKey) == 1 && strings.EqualFold(strings.TrimSpace(c.Type), "INTEGER"))
	if !c.NotNull && !keyNotNull && len(s) > 0 {
		if typ, ok := s["type"].(string); ok {
			s["type"] = []any{typ, "null"}
		} else if alts, ok := s["anyOf"].([]any); ok {
			s["anyOf"] = append(alts, obj{"type": "null"})
		} else {
			s = obj{"anyOf": []any{s, obj{"type": "null"}}}
		}
	}
	desc := "SQL type " + c.Type
	if c.Type == "" {
		desc = "no declared type (any value)"
	}
	if c.PK > 0 {
		desc += "; primary key column " + strconv.Itoa(c.PK)
	}
	if c.Default != nil {
		desc += "; default " + *c.Default
	}
	s["description"] = desc
	if c.Generated {
		s["readOnly"] = true
	}
	return s
}

// openAPIDoc describes the REST API of the live schema as OpenAPI 3.1.
func openAPIDoc(tables []models.Table) obj {
	errResp := func(desc string) obj {
		return obj{"description": desc, "content": obj{"application/json": obj{"schema": ref("Error")}}}
	}
	jsonContent := func(s obj) obj { return obj{"application/json": obj{"schema": s}} }
	seqProp := obj{"type": "integer", "format": "int64", "description": "changelog head (reads) or the seq of the last change made (writes)"}

	schemas := obj{
		"Error": obj{
			"type":     "object",
			"required": []string{"error"},
			"properties": obj{"error": obj{
				"type":       "object",
				"required":   []string{"code", "message"},
				"properties": obj{"code": obj{"type": "string"}, "message": obj{"type": "string"}},
			}},
		},
		"Blob": obj{
			"type": "object", "required": []string{"$blob"},
			"properties":  obj{"$blob": obj{"type": "string", "pattern": "^([0-9A-Fa-f]{2})*$"}},
			"description": "a BLOB: its bytes in hex",
		},
		"Infinity": obj{
			"type": "object", "required": []string{"$real"},
			"properties":  obj{"$real": obj{"type": "string", "enum": []string{"Infinity", "-Infinity"}}},
			"description": "a REAL infinity, which JSON numbers cannot spell",
		},
		"Change": obj{
			"type":     "object",
			"required": []string{"seq", "table", "op", "pk", "old", "new", "ts"},
			"properties": obj{
				"seq":   obj{"type": "integer", "format": "int64"},
				"table": obj{"type": "string"},
				"op":    obj{"type": "string", "enum": []string{models.OpInsert, models.OpUpdate, models.OpDelete}},
				"pk":    obj{"type": "object"},
				"old":   obj{"type": []string{"object", "null"}},
				"new":   obj{"type": []string{"object", "null"}},
				"ts":    obj{"type": "integer", "format": "int64", "description": "unix milliseconds"},
			},
		},
		"Column": obj{
			"type": "object",
			"properties": obj{
				"name": obj{"type": "string"}, "type": obj{"type": "string"}, "notnull": obj{"type": "boolean"},
				"default": obj{"type": []string{"string", "null"}}, "pk": obj{"type": "integer"},
				"generated": obj{"type": "boolean"},
			},
		},
		"Table": obj{
			"type": "object",
			"properties": obj{
				"name":          obj{"type": "string"},
				"primary_key":   obj{"type": "array", "items": obj{"type": "string"}},
				"columns":       obj{"type": "array", "items": ref("Column")},
				"without_rowid": obj{"type": "boolean"},
				"strict":        obj{"type": "boolean"},
				"row_count":     obj{"type": "integer", "format": "int64"},
			},
		},
	}

	commonErrors := func(resp obj) obj {
		resp["400"] = errResp("malformed request, unknown column or bad filter")
		resp["404"] = errResp("unknown table or row")
		resp["503"] = errResp("the database cannot serve the request now (busy, disk I/O error, read-only, disk full); retry")
		return resp
	}
	writeErrors := func(resp obj) obj {
		commonErrors(resp)
		resp["503"] = errResp("the database cannot take writes now (busy, disk I/O error, read-only, disk full; read_only: this server serves it read-only; capture_paused: the table's capture is paused for a schema change)")
		resp["409"] = errResp("a UNIQUE, PRIMARY KEY, NOT NULL, CHECK or FOREIGN KEY constraint refused the write")
		resp["413"] = errResp("the body exceeds the size limit")
		resp["415"] = errResp("the body is not application/json")
		return resp
	}

	paths := obj{
		"/api/tables": obj{"get": obj{
			"operationId": "listTables",
			"summary":     "tracked tables, their columns and row counts",
			"responses": obj{"200": obj{"description": "the tables", "content": jsonContent(obj{
				"type": "object", "properties": obj{"tables": obj{"type": "array", "items": ref("Table")}},
			})}},
		}},
		"/api/changes": obj{"get": obj{
			"operationId": "listChanges",
			"summary":     "change records after since, in seq order",
			"parameters": []any{
				obj{"name": "since", "in": "query", "schema": obj{"type": "integer", "minimum": 0}},
				obj{"name": "limit", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": maxChangesLimit}},
				obj{"name": "stream", "in": "query", "schema": obj{"type": "string"}},
			},
			"responses": obj{
				"200": obj{"description": "changes", "content": jsonContent(obj{
					"type": "object",
					"properties": obj{
						"changes": obj{"type": "array", "items": ref("Change")},
						"head":    obj{"type": "integer", "format": "int64"},
						"oldest":  obj{"type": "integer", "format": "int64"},
						"stream":  obj{"type": "string"},
					},
				})},
				"400": errResp("bad since or limit"),
				"410": errResp("the changes after since cannot be delivered (code pruned, future or stream): reload"),
			},
		}},
	}

	used := map[string]bool{}
	for _, t := range tables {
		name := schemaName(t.Name, used)
		writeName := name + "_write"
		rowProps, writeProps := obj{}, obj{}
		var required []string
		if rk := t.RowidKey; rk != "" {
			rowProps[rk] = obj{"type": "integer", "format": "int64", "description": "the rowid, this table's key"}
			writeProps[rk] = obj{"type": []string{"integer", "null"}, "format": "int64"}
			required = append(required, rk)
		}
		var filterParams []any
		for _, c := range t.Columns {
			rowProps[c.Name] = columnSchema(c, t)
			required = append(required, c.Name)
			if !c.Generated {
				writeProps[c.Name] = columnSchema(c, t)
			}
			switch c.Name {
			case query.ParamLimit, query.ParamAfter, query.ParamOrder, query.ParamSelect,
				query.ParamOr, query.ParamAnd, query.ParamNotOr, query.ParamNotAnd:
				continue // reserved query parameters; a column named or/and is filterable in a group
			}
			filterParams = append(filterParams, obj{
				"name": c.Name, "in": "query", "required": false,
				"schema":      obj{"type": "string"},
				"description": "filter: eq.v, neq.v, lt.v, lte.v, gt.v, gte.v, like.pattern, in.(a,b), is.null, is.notnull; not. before the operator negates it",
			})
		}
		for _, g := range []string{query.ParamOr, query.ParamAnd, query.ParamNotOr, query.ParamNotAnd} {
			filterParams = append(filterParams, obj{
				"name": g, "in": "query", "required": false,
				"schema":      obj{"type": "string"},
				"description": "logical group, e.g. (a.eq.1,b.like.*x*,and(c.gt.2,d.not.is.null)); see docs/rest.md",
			})
		}
		schemas[name] = obj{"type": "object", "title": t.Name, "properties": rowProps, "required": required}
		schemas[writeName] = obj{"type": "object", "title": t.Name + " (write)", "properties": writeProps, "additionalProperties": false}

		rowResp := func(desc string) obj {
			return obj{"description": desc, "content": jsonContent(obj{
				"type": "object", "required": []string{"row", "seq"},
				"properties": obj{"row": ref(name), "seq": seqProp},
			})}
		}
		keyDesc := "the row's " + strings.Join(t.KeyColumns(), ", ")
		if len(t.KeyColumns()) > 1 {
			keyDesc += ": comma-separated in key order, each value percent-encoded"
		}
		keyParam := obj{"name": "key", "in": "path", "required": true, "schema": obj{"type": "string"}, "description": keyDesc}
		listParams := append([]any{
			obj{"name": "limit", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": query.MaxLimit, "default": query.DefaultLimit}},
			obj{"name": "after", "in": "query", "schema": obj{"type": "string"}, "description": "the next cursor of the previous page"},
			obj{"name": "order", "in": "query", "schema": obj{"type": "string"}, "description": "col.asc|desc[.nullsfirst|nullslast], comma-separated"},
			obj{"name": "select", "in": "query", "schema": obj{"type": "string"}, "description": "comma-separated columns"},
		}, filterParams...)
		base := "/api/tables/" + url.PathEscape(t.Name) + "/rows"
		op := strings.TrimPrefix(name, "Row_")
		paths[base] = obj{
			"get": obj{
				"operationId": "list_" + op, "summary": "list rows of " + t.Name, "parameters": listParams,
				"responses": commonErrors(obj{"200": obj{"description": "a page of rows", "content": jsonContent(obj{
					"type": "object", "required": []string{"rows", "next", "seq"},
					"properties": obj{
						"rows": obj{"type": "array", "items": ref(name)},
						"next": obj{"type": []string{"string", "null"}},
						"seq":  seqProp,
					},
				})}}),
			},
			"post": obj{
				"operationId": "create_" + op, "summary": "insert a row into " + t.Name,
				"requestBody": obj{"required": true, "content": jsonContent(ref(writeName))},
				"responses":   writeErrors(obj{"201": rowResp("the row as stored")}),
			},
		}
		paths[base+"/{key}"] = obj{
			"parameters": []any{keyParam},
			"get": obj{
				"operationId": "get_" + op, "summary": "read one row of " + t.Name,
				"responses": commonErrors(obj{"200": rowResp("the row")}),
			},
			"patch": obj{
				"operationId": "update_" + op, "summary": "update columns of one row of " + t.Name,
				"requestBody": obj{"required": true, "content": jsonContent(ref(writeName))},
				"responses":   writeErrors(obj{"200": rowResp("the row as stored")}),
			},
			"delete": obj{
				"operationId": "delete_" + op, "summary": "delete one row of " + t.Name,
				"responses": writeErrors(obj{"200": obj{"description": "deleted", "content": jsonContent(obj{
					"type": "object", "required": []string{"seq"}, "properties": obj{"seq": seqProp},
				})}}),
			},
		}
	}

	return obj{
		"openapi": "3.1.0",
		"info": obj{
			"title":       "sqlws REST API",
			"version":     "1",
			"description": "CRUD over every tracked table of this database, generated from its live schema. See docs/rest.md.",
		},
		"paths":      paths,
		"components": obj{"schemas": schemas},
	}
}
