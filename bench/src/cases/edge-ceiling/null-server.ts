/**
 * A push endpoint that does no work: it reads each request's body to the end and answers 200 with
 * an answer shaped like the edge's (`{"status":"accepted","push_id":"<uuid>",…}`, so the generator
 * does exactly what it does against the edge). No auth, no validation, no Redis. What the bench
 * measures against it is the ceiling of this machine and this generator, not a product figure.
 *
 * Env: PORT, SERVER=uws (default; uWebSockets.js, one process per core, each binding the port with
 * SO_REUSEPORT like the edge) or node (node:http, one node:cluster worker per core), PROCESSES
 * (default cores). GET /healthz answers 200.
 */
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import os from 'node:os';
import uWS from 'uWebSockets.js';

const port = Number(process.env.PORT);
const kind = process.env.SERVER ?? 'uws';
const processes = Number(process.env.PROCESSES ?? os.availableParallelism());
if (!Number.isInteger(port) || port <= 0) throw new Error('PORT must be a port number');
if (kind !== 'uws' && kind !== 'node') throw new Error('SERVER must be uws or node');

const answer = () => `{"status":"accepted","push_id":"${randomUUID()}","records":4,"duplicate":false}`;

function serveUws(): void {
  uWS
    .App()
    .get('/healthz', (res) => {
      res.end('ok');
    })
    .post('/*', (res) => {
      let aborted = false;
      const chunks: Buffer[] = [];
      res.onAborted(() => {
        aborted = true;
      });
      // The edge copies each chunk out of uWS's buffer too (it is only valid during the callback).
      res.onData((chunk, last) => {
        chunks.push(Buffer.from(chunk.slice(0)));
        if (!last || aborted) return;
        res.cork(() => {
          res.writeStatus('200 OK').writeHeader('content-type', 'application/json').end(answer());
        });
      });
    })
    .listen('127.0.0.1', port, (socket) => {
      if (!socket) {
        console.error(`cannot listen on 127.0.0.1:${port}`);
        process.exit(1);
      }
    });
}

function serveNode(): void {
  createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') return void res.end('ok');
    req.on('data', () => undefined);
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(answer());
    });
  }).listen(port, '127.0.0.1');
}

const stopOnSigterm = () =>
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    process.exit(0);
  });

if (kind === 'uws') {
  // As the edge does: the primary serves too and forks the others.
  if (cluster.isPrimary) {
    for (let i = 1; i < processes; i++) cluster.fork();
    stopOnSigterm();
  }
  serveUws();
} else if (cluster.isPrimary && processes > 1) {
  for (let i = 0; i < processes; i++) cluster.fork();
  stopOnSigterm();
} else {
  serveNode();
}
