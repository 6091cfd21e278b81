/**
 * The large-push thread (push/large-push-thread.ts): prepares a big push body off the edge's event
 * loop and hands the body back. Its own entry (bundled as dist/large-push-worker.mjs next to main.mjs).
 */
import { parentPort } from 'node:worker_threads';
import { AppError } from '@pga/contracts';
import { preparePush } from './push/prepare-push';
import type { LargePushReply, LargePushRequest } from './push/large-push-thread';

const port = parentPort;
if (!port) throw new Error('large-push-worker runs as a worker thread');

port.on('message', (req: LargePushRequest) => {
  let reply: LargePushReply;
  const transfer: ArrayBuffer[] = [];
  try {
    const body = Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength);
    const prepared = preparePush({ body, collectorId: req.collectorId, idempotencyHeader: req.idempotencyHeader });
    transfer.push(req.body.buffer as ArrayBuffer);
    reply = { id: req.id, prepared, body: req.body };
  } catch (err) {
    reply =
      err instanceof AppError
        ? { id: req.id, error: { code: err.code, message: err.message } }
        : { id: req.id, internal: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply, transfer);
});
