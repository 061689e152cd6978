// conformance.mjs URL: drive sqlws with Node's ws as an independent implementation
// of RFC 6455, one step per line of stdin, one JSON line of result per step:
//   subscribe           -> {"step":"subscribed"}
//   frame               -> {"step":"frame","bytes":N,"seqs":[...]} for the next changes frame
//   ping                -> {"step":"pong"} once the server answered a ping
//   fragmented          -> sends unsubscribe in three fragments; {"step":"unsubscribed"}
//   close               -> {"step":"closed","code":C} once the server closed TCP
// Frames are checked as they arrive: text, valid JSON, in order.
import WebSocket from 'ws';
import readline from 'node:readline';

const ws = new WebSocket(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const frames = [];
const waiters = [];
let replies = [];
let lastSeq = 0;

function next(pred) {
  return new Promise((resolve) => {
    waiters.push({ pred, resolve });
    settle(); // it may have arrived already
  });
}
function settle() {
  for (let i = 0; i < waiters.length; i++) {
    const w = waiters[i];
    const got = w.pred();
    if (got !== undefined) {
      waiters.splice(i--, 1);
      w.resolve(got);
    }
  }
}

ws.on('message', (data, isBinary) => {
  if (isBinary) return out({ step: 'error', error: 'binary frame' });
  const msg = JSON.parse(data.toString());
  if (msg.type === 'changes') {
    const seqs = msg.changes.map((c) => c.seq);
    for (const s of seqs) {
      if (s <= lastSeq) out({ step: 'error', error: `seq ${s} after ${lastSeq}` });
      lastSeq = s;
    }
    frames.push({ bytes: data.length, seqs });
  } else {
    replies.push(msg);
  }
  settle();
});
ws.on('pong', () => {
  replies.push({ type: 'pong' });
  settle();
});
ws.on('error', (err) => out({ step: 'error', error: String(err) }));
ws.on('close', (code) => {
  replies.push({ type: 'closed', code });
  settle();
});

const takeReply = (type) => () => {
  const i = replies.findIndex((r) => r.type === type);
  if (i < 0) return undefined;
  return replies.splice(i, 1)[0];
};

const steps = {
  subscribe: async () => {
    ws.send(JSON.stringify({ type: 'subscribe', id: 'a', tables: ['t'] }));
    await next(takeReply('subscribed'));
    out({ step: 'subscribed' });
  },
  frame: async () => {
    const f = await next(() => frames.shift());
    out({ step: 'frame', bytes: f.bytes, seqs: f.seqs });
  },
  ping: async () => {
    ws.ping('conformance');
    await next(takeReply('pong'));
    out({ step: 'pong' });
  },
  fragmented: async () => {
    const msg = JSON.stringify({ type: 'unsubscribe', id: 'a' });
    const third = Math.ceil(msg.length / 3);
    ws.send(msg.slice(0, third), { fin: false });
    ws.ping('between fragments');
    ws.send(msg.slice(third, 2 * third), { fin: false });
    ws.send(msg.slice(2 * third), { fin: true });
    await next(takeReply('unsubscribed'));
    out({ step: 'unsubscribed' });
  },
  close: async () => {
    ws.close(1000, 'done');
    const r = await next(takeReply('closed'));
    out({ step: 'closed', code: r.code });
  },
};

ws.on('open', () => {
  const rl = readline.createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  rl.on('line', (line) => {
    const step = steps[line.trim()];
    if (step) chain = chain.then(step);
  });
  rl.on('close', () => chain.then(() => process.exit(0)));
});
