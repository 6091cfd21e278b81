// A client of the admin service in a process of its own (so that its work does not share the
// service's event loop): `node session-flood.mjs <json>` with
//   { url, cookie, concurrency, count, path, honour }  → floods: `concurrency` loops of GET /trpc/<path>
//        with `cookie`, `count` requests in all; prints {"statuses":{"200":n,…},"retryAfter":[…],"message":…,"ms":…}
//   { url, cookie, every, until, path }          → measures: one request at a time, `every` ms apart,
//        until the file `until` exists; prints {"statuses":{…},"latencies":[ms,…]}
// Used by test/admin/session-in-flight.test.ts; plain Node, no dependencies.
import { existsSync } from 'node:fs';
import { Agent, request } from 'node:http';

const opts = JSON.parse(process.argv[2]);
const { port } = new URL(opts.url);
const agent = new Agent({ keepAlive: true, maxSockets: Infinity });

function get(path) {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: `/trpc/${path}`, agent, headers: { cookie: opts.cookie } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () =>
        resolve({ status: res.statusCode, text, retryAfter: res.headers['retry-after'], ms: performance.now() - started }),
      );
    });
    req.on('error', () => resolve({ status: 'error', text: '', ms: performance.now() - started }));
    req.end();
  });
}

const statuses = {};
const count = (s) => (statuses[s] = (statuses[s] ?? 0) + 1);
const path = opts.path ?? 'collectors.list?input=%7B%7D';

if (opts.concurrency) {
  let sent = 0;
  let refused;
  const started = performance.now();
  const loop = async () => {
    while (sent < opts.count) {
      sent++;
      const a = await get(path);
      count(a.status);
      // `honour`: a client that waits the Retry-After of a 429 before its next request.
      if (opts.honour && a.status === 429) await new Promise((r) => setTimeout(r, Number(a.retryAfter ?? 1) * 1000));
      if (a.status !== 200 && !refused) refused = { status: a.status, retryAfter: a.retryAfter, text: a.text };
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, loop));
  process.stdout.write(JSON.stringify({ statuses, refused, ms: Math.round(performance.now() - started) }));
} else {
  const latencies = [];
  const texts = [];
  while (!existsSync(opts.until)) {
    const a = await get(path);
    count(a.status);
    latencies.push(Math.round(a.ms * 10) / 10);
    if (a.status !== 200) texts.push(a.text.slice(0, 300));
    await new Promise((r) => setTimeout(r, opts.every));
  }
  process.stdout.write(JSON.stringify({ statuses, latencies, texts: texts.slice(0, 3) }));
}
agent.destroy();
