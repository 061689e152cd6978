package e2e

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sqlws/sqlws/internal/testenv"
)

// TestBrowserBigIntKeys: integer keys beyond 2^53 (snowflake ids) stay exact in the
// dashboard: two ids that round to the same double are two rows, a live update
// reaches the right one, and deleting one deletes exactly that row.
func TestBrowserBigIntKeys(t *testing.T) {
	db := testenv.NewDB(t, `
CREATE TABLE s(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO s VALUES (9007199254740992, 'a'), (9007199254740993, 'b');`)
	srv := testenv.StartServer(t, db)
	p := bwOpenDashboard(t, srv, "/?table=s")
	p.waitJS("two rows", bwWait, `window.__sqlws.table === "s" && window.__sqlws.rows === 2`)
	k2, k3 := `{"id":"9007199254740992"}`, `{"id":"9007199254740993"}` // beyond 2^53-1: kept as their decimal text
	if got := bwEval[string](p, bwCell(k3, "v")); got != "b" {
		t.Fatalf("row 9007199254740993 shows v = %q, want b\npage state: %s", got, p.state())
	}
	testenv.SQLite(t, db, `UPDATE s SET v = 'B' WHERE id = 9007199254740993;`)
	p.waitJS("the live update on the exact row", bwWait, bwCell(k3, "v")+` === "B" && `+bwCell(k2, "v")+` === "a"`)

	p.do("delete row 9007199254740993", chromedp.Click(chromedp.CSS(`[data-testid="rows"] [data-key='`+k3+`'] [data-testid="row-delete-btn"]`)))
	p.waitJS("the confirmation", bwWait, `document.querySelector('[data-testid="confirm-dialog"]').open`)
	p.do("confirm", chromedp.Click(chromedp.CSS(`[data-testid="confirm-delete"]`)))
	p.waitJS("the row to go", bwWait, bwRow(k3)+` === null`)
	if got := testenv.SQLite(t, db, `SELECT group_concat(id || '=' || v) FROM s;`); got != "9007199254740992=a\n" {
		t.Fatalf("table after deleting 9007199254740993 = %q, want only 9007199254740992=a", got)
	}
}
