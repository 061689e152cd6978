package ws_test

import (
	"context"
	"log"
	"net/http"

	"github.com/sqlws/sqlws/db"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/ws"
)

// Example wires the pieces the way `sqlws serve` does: the database is the window's
// history, the tailer feeds the hub, and the hub serves /ws.
func Example() {
	ctx := context.Background()
	d, err := db.Open(ctx, "app.db", db.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Install(ctx); err != nil { // migrations, stream id, capture triggers
		log.Fatal(err)
	}
	pos, err := d.Position(ctx)
	if err != nil {
		log.Fatal(err)
	}

	hub := ws.NewHub(fanout.NewWindow(d, pos.Head, fanout.Options{}), d, ws.Options{})
	defer hub.Close(ctx)
	go d.NewTailer(pos.Head, hub.Publish, db.TailerOptions{Dropped: hub.TableDropped}).Run(ctx)

	http.Handle("/ws", hub)
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", nil))
}
