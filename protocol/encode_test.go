package protocol_test

import (
	"encoding/json"
	"testing"

	"github.com/sqlws/sqlws/models"
	"github.com/sqlws/sqlws/protocol"
)

// A changes message is the records' own bytes between a fixed head and tail, and a
// client decodes it into exactly those records.
func TestAppendChanges(t *testing.T) {
	var entries []models.Encoded
	for s := int64(1); s <= 3; s++ {
		entries = append(entries, models.Encoded{Seq: s, Table: "t",
			JSON: models.AppendChange(nil, s, "t", "insert", []byte(`{"id":1}`), nil, []byte(`{"id":1,"v":"x"}`), 5)})
	}
	frame := protocol.AppendChanges(nil, []byte(`"x"`), entries)
	want := `{"type":"changes","id":"x","changes":[` + string(entries[0].JSON) + "," + string(entries[1].JSON) + "," + string(entries[2].JSON) + "]}"
	if string(frame) != want {
		t.Fatalf("frame %s", frame)
	}
	var f protocol.ChangesFrame
	if err := json.Unmarshal(frame, &f); err != nil || len(f.Changes) != 3 || f.Changes[2].Seq != 3 || string(f.ID) != `"x"` {
		t.Fatalf("decoded %+v (%v)", f, err)
	}
}
