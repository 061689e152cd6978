package models_test

import (
	"encoding/json"
	"testing"

	"github.com/sqlws/sqlws/models"
)

// TestSplitChange: the members SplitChange finds are those encoding/json finds, for
// records as AppendChange and AppendMovedChange write them.
func TestSplitChange(t *testing.T) {
	for _, rec := range [][]byte{
		models.AppendChange(nil, 7, "todos", "insert", []byte(`{"id":1}`), nil, []byte(`{"id":1,"t":"a \"}{[ b","n":{"$blob":"00"}}`), 99),
		models.AppendMovedChange(nil, 8, "tab\"le", "update", "out", []byte(`{"k":"x,y"}`), []byte(`{"k":"x,y","v":[1,{"a":2}]}`), nil, -1),
		models.AppendChange(nil, 9, "t", "delete", []byte(`{"rowid":3}`), []byte(`{"rowid":3}`), nil, 0),
	} {
		p, err := models.SplitChange(rec)
		if err != nil {
			t.Fatalf("%s: %v", rec, err)
		}
		var c models.Change
		if err := json.Unmarshal(rec, &c); err != nil {
			t.Fatal(err)
		}
		var table string
		json.Unmarshal(p.Table, &table)
		if p.Seq != c.Seq || p.TS != c.TS || p.Op != c.Op || p.Moved != c.Moved || table != c.Table ||
			string(p.PK) != string(c.PK) || string(p.Old) != string(c.Old) || string(p.New) != string(c.New) {
			t.Errorf("%s:\nsplit %+v\njson  %+v", rec, p, c)
		}
	}
	for _, bad := range []string{``, `[]`, `{"seq":x}`, `{"op":"insert"`, `{"pk":{"a":1}`, `{"a" 1}`} {
		if _, err := models.SplitChange([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
