// close.mjs URL CASE: drive one close scenario with Node's ws, an independent
// WebSocket implementation that, as RFC 6455 asks, waits for the server to close TCP
// after the close handshake before it emits 'close'. Prints one JSON line:
// {"case", "code", "reason", "ms"} once 'close' fires, ms counted from the moment the
// scenario's trigger was sent; or {"case", "timeout": true} if it never fires.
import WebSocket from 'ws';

const [url, name] = process.argv.slice(2);
const limitMs = 15000;
const ws = new WebSocket(url);
let sentAt = 0;
const timer = setTimeout(() => {
  console.log(JSON.stringify({ case: name, timeout: true }));
  process.exit(0);
}, limitMs);

const triggers = {
  // A message over the server's 64 KiB read limit: expect 1009.
  too_big: () => ws.send('x'.repeat(70 * 1024)),
  // Text that is not UTF-8 (ws does not validate what it sends): expect 1007.
  invalid_utf8: () => ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false }),
  // The client closes: expect its own code echoed, and TCP closed by the server.
  clean: () => ws.close(1000, 'bye'),
  // Nothing: the test stops the server; expect 1001.
  wait: () => process.stdout.write(JSON.stringify({ case: name, ready: true }) + '\n'),
};

ws.on('message', (data) => {
  if (sentAt) return;
  const msg = JSON.parse(data.toString());
  if (msg.type !== 'hello') return;
  sentAt = Date.now();
  triggers[name]();
});
ws.on('error', () => {}); // the close event reports the outcome
ws.on('close', (code, reason) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ case: name, code, reason: reason.toString(), ms: sentAt ? Date.now() - sentAt : -1 }));
  process.exit(0);
});
