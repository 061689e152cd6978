# The W5 writer on the C library's SQLite, for `sqlws-bench --w5-writer python3`:
# the same rows, transactions and report as `sqlws-bench writer`, through Python's
# sqlite3 module (the system libsqlite3, e.g. Debian 12's 3.40). SQLite reads the
# clock for the capture timestamp through the C library here (the vDSO); in the Go
# writer, modernc.org/sqlite's libc makes a clock_gettime system call per statement.
import argparse, json, sqlite3, time

p = argparse.ArgumentParser()
p.add_argument("--db", required=True)
p.add_argument("--table", default="bench_rows")
p.add_argument("--duration", type=float, required=True, help="seconds")
p.add_argument("--txn", type=int, default=1)
p.add_argument("--payload", type=int, default=64)
a = p.parse_args()

c = sqlite3.connect(a.db, isolation_level=None, timeout=30)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=NORMAL")
table = '"' + a.table.replace('"', '""') + '"'
ins = f"INSERT INTO {table} (bench_ns, payload) VALUES (?, ?)"
payload = "x" * a.payload
rows = txns = max_txn_us = 0
start = time.time_ns()
deadline = start + int(a.duration * 1e9)
while time.time_ns() < deadline:
    t0 = time.time_ns()
    c.execute("BEGIN IMMEDIATE")
    c.executemany(ins, ((time.time_ns(), payload) for _ in range(a.txn)))
    c.execute("COMMIT")
    max_txn_us = max(max_txn_us, (time.time_ns() - t0) // 1000)
    rows += a.txn
    txns += 1
end = time.time_ns()
head = 0
if c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlws_changes'").fetchone()[0]:
    head = c.execute("SELECT coalesce(max(seq), 0) FROM sqlws_changes").fetchone()[0]
print(json.dumps({"rows": rows, "txns": txns, "start_ns": start, "end_ns": end,
                  "rows_per_sec": rows / ((end - start) / 1e9), "head": head, "max_txn_us": max_txn_us}))
