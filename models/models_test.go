package models_test

import (
	"encoding/json"
	"testing"

	"github.com/sqlws/sqlws/models"
)

func TestAppendChangeIsValidJSON(t *testing.T) {
	b := models.AppendChange(nil, 7, "we\"ird\n", "update", []byte(`{"id":1}`), []byte(`{"id":1,"v":"\u0000"}`), nil, 123)
	var c models.Change
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if c.Seq != 7 || c.Table != "we\"ird\n" || c.Op != "update" || string(c.New) != "null" || c.TS != 123 {
		t.Fatalf("decoded %+v from %s", c, b)
	}
}
