package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sqlws/sqlws/client"
	"github.com/sqlws/sqlws/internal/testenv"
)

// Follow a table: every change after seq 0, as it happens.
func Example() {
	srv := startExampleServer() // `sqlws serve` on a new database with a todos table
	defer srv.stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.url, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, client.SubscribeOptions{Tables: []string{"todos"}, Since: client.Seq(0)})
	if err != nil {
		log.Fatal(err)
	}

	srv.sql(`INSERT INTO todos(title) VALUES ('milk');
UPDATE todos SET done = 1 WHERE title = 'milk';`)

	for n := 0; n < 2; {
		changes, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, ch := range changes {
			m, err := ch.Decode()
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println(ch.Seq, ch.Table, ch.Op, string(m.New))
			n++
		}
	}
	// Output:
	// 1 todos insert {"id":1,"title":"milk","done":0}
	// 2 todos update {"id":1,"title":"milk","done":1}
}

// Keep a copy of a table current: load it over REST, then apply the changes after
// the seq the answer is current as of. A reset means changes were lost to the
// client (pruned, or another database): load again.
func Example_reload() {
	ctx := context.Background()
	base := "http://127.0.0.1:8080"
	c, err := client.Dial(ctx, base, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for {
		rows, seq, err := loadTodos(ctx, base)
		if err != nil {
			log.Fatal(err)
		}
		sub, err := c.Subscribe(ctx, client.SubscribeOptions{Tables: []string{"todos"}, Since: client.Seq(seq)})
		if err != nil {
			log.Fatal(err)
		}
		for {
			changes, err := sub.Next(ctx)
			var reset *client.ResetError
			if errors.As(err, &reset) {
				break // load again
			}
			if err != nil {
				log.Fatal(err)
			}
			for _, ch := range changes {
				m, err := ch.Decode()
				if err != nil {
					log.Fatal(err)
				}
				if ch.Op != "insert" {
					delete(rows, todoID(m.Old)) // the row as it was (an update may change the key)
				}
				if ch.Op != "delete" {
					rows[todoID(m.New)] = m.New
				}
			}
		}
	}
}

// todoID returns the key of a todos row image.
func todoID(row json.RawMessage) string {
	var r struct{ ID json.RawMessage }
	json.Unmarshal(row, &r)
	return string(r.ID)
}

// loadTodos reads the todos table over REST (a single page, for brevity): its rows
// by id, and the seq they are current as of.
func loadTodos(ctx context.Context, base string) (map[string]json.RawMessage, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/tables/todos/rows?limit=10000", nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Rows []json.RawMessage `json:"rows"`
		Seq  int64             `json:"seq"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, 0, err
	}
	rows := make(map[string]json.RawMessage, len(body.Rows))
	for _, r := range body.Rows {
		rows[todoID(r)] = r
	}
	return rows, body.Seq, nil
}

func ExampleWebSocketURL() {
	for _, u := range []string{"http://127.0.0.1:8080", "https://feed.example/", "wss://proxy.example/changes"} {
		ws, _ := client.WebSocketURL(u)
		fmt.Println(ws)
	}
	// Output:
	// ws://127.0.0.1:8080/ws
	// wss://feed.example/ws
	// wss://proxy.example/changes
}

// exampleServer is `sqlws serve` (the binary TestMain builds) on a fresh database
// with a todos table, for the runnable examples.
type exampleServer struct {
	url, db, dir string
	cmd          *exec.Cmd
}

func startExampleServer() *exampleServer {
	bin, err := testenv.BuildBinary()
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sqlws-example-")
	if err != nil {
		log.Fatal(err)
	}
	s := &exampleServer{db: filepath.Join(dir, "todos.db"), dir: dir}
	s.sql(`CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0);`)
	s.cmd = exec.Command(bin, "serve", "--db", s.db, "--addr", "127.0.0.1:0", "--log-level", "warn")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		u, ok := strings.CutPrefix(strings.TrimSpace(l), testenv.ListeningPrefix)
		if !ok {
			s.stop()
			log.Fatalf("sqlws serve printed %q", l)
		}
		s.url = u
	case <-time.After(30 * time.Second):
		s.stop()
		log.Fatal("sqlws serve did not start within 30s")
	}
	return s
}

func (s *exampleServer) sql(q string) {
	if _, err := testenv.RunSQLite(s.db, q); err != nil {
		log.Fatal(err)
	}
}

func (s *exampleServer) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(s.dir)
}
