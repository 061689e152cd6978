package ws_test

import (
	"context"
	"log"
	"net/http"

	"github.com/sqlws/sqlws/capture"
	"github.com/sqlws/sqlws/changelog"
	"github.com/sqlws/sqlws/fanout"
	"github.com/sqlws/sqlws/store"
	"github.com/sqlws/sqlws/ws"
)

// Example wires the pieces the way `sqlws serve` does: the changelog is the window's
// history, the tailer feeds the hub, the live schema tells the hub which tables
// exist, and the hub serves /ws.
func Example() {
	ctx := context.Background()
	st, err := store.Open(ctx, "app.db", store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	schema := capture.NewSchema(st, capture.Options{})
	syncer := capture.NewSyncer(schema)
	if _, err := syncer.Install(ctx); err != nil { // migrations, stream id, capture triggers
		log.Fatal(err)
	}
	changes := changelog.New(st)
	pos, err := changes.Position(ctx)
	if err != nil {
		log.Fatal(err)
	}

	hub := ws.NewHub(fanout.NewWindow(changes, pos.Head, fanout.Options{}), schema, ws.Options{})
	defer hub.Close(ctx)
	go schema.Run(ctx) // follows schema changes
	go syncer.Run(ctx) // keeps the capture triggers matching them
	go changes.NewTailer(pos.Head, hub.Publish, changelog.TailerOptions{Dropped: hub.TableDropped, SchemaChanged: schema.Poke}).Run(ctx)

	http.Handle("/ws", hub)
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", nil))
}
