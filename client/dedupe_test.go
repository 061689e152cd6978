package client

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sqlws/sqlws/internal/testenv"
)

// TestDedupeReplay: the server is made to send again what the client already
// delivered (a subscribe from seq 0 written on the client's own socket, as a resume
// from an older persisted seq would cause); the consumer sees nothing twice, and
// Stats counts what was dropped.
func TestDedupeReplay(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t, `CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);`)
	srv := testenv.StartServer(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout)
	defer cancel()
	c, err := Dial(ctx, srv.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, SubscribeOptions{ID: "d", Since: Seq(0)})
	if err != nil {
		t.Fatal(err)
	}
	var sql strings.Builder
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&sql, "INSERT INTO t(v) VALUES(%d);\n", i)
	}
	testenv.SQLite(t, db, sql.String())
	var got []Change
	for len(got) < 10 {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}

	// Behind the client's back: end the server's subscription and make it again from
	// seq 0. The server replays seqs 1–10.
	c.mu.Lock()
	cn := c.conn
	c.mu.Unlock()
	cn.send([]byte(`{"type":"unsubscribe","id":"d"}`))
	cn.send([]byte(`{"type":"subscribe","id":"d","since":0}`))
	testenv.WaitFor(t, testenv.Timeout, "the replay to arrive", func() bool {
		return sub.Stats().Dropped == 10
	})
	testenv.SQLite(t, db, "INSERT INTO t(v) VALUES(11);")
	b, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1 || b[0].Seq != 11 {
		t.Fatalf("after the replay Next returned %d changes starting at seq %d, want only seq 11", len(b), b[0].Seq)
	}
	if st := sub.Stats(); st.Received != 21 || st.Dropped != 10 || st.Delivered != 11 || st.Buffered != 0 {
		t.Errorf("stats = %+v, want 21 received, 10 dropped, 11 delivered, none buffered", st)
	}
	if sub.LastSeq() != 11 {
		t.Errorf("LastSeq = %d, want 11", sub.LastSeq())
	}
}
