// filter.mjs URL: Node's ws (an implementation independent of the server's and of the
// Go tests' client) subscribes with a bad and a good where/select and prints every
// message it receives as one JSON line, each change record on its own line, until
// stdin closes or 30 s pass.
import WebSocket from 'ws';

const [url] = process.argv.slice(2);
const ws = new WebSocket(url);
setTimeout(() => process.exit(0), 30000);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
ws.on('message', (data) => {
  const m = JSON.parse(data.toString());
  if (m.type === 'hello') {
    ws.send(JSON.stringify({ type: 'subscribe', id: 'bad', tables: ['todos'], where: 'nope=eq.1' }));
    ws.send(JSON.stringify({ type: 'subscribe', id: 'f', tables: ['todos'], where: 'done=eq.0', select: 'id,title' }));
    return;
  }
  if (m.type === 'changes') {
    for (const c of m.changes) console.log(JSON.stringify({ type: 'change', id: m.id, change: c }));
    return;
  }
  console.log(JSON.stringify(m));
});
ws.on('error', (e) => { console.log(JSON.stringify({ type: 'node_error', message: String(e) })); });
