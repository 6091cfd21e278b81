/**
 * The large-push thread (push/large-push-thread.ts): prepares a big push body and builds its job
 * off the edge's event loop. Its own entry (bundled as dist/large-push-worker.mjs next to main.mjs).
 */
import { parentPort } from 'node:worker_threads';
import { AppError } from '@pga/contracts';
import { encodePushJob } from './push/encode-push-job';
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
    const job = encodePushJob(
      [
        {
          push_id: prepared.pushId,
          collector_id: req.collectorId,
          received_at: req.receivedAt,
          checksum: prepared.checksum,
          body,
        },
      ],
      req.replayWindowSeconds,
    );
    transfer.push(job.buffer as ArrayBuffer);
    reply = { id: req.id, prepared, job };
  } catch (err) {
    reply =
      err instanceof AppError
        ? { id: req.id, error: { code: err.code, message: err.message } }
        : { id: req.id, internal: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply, transfer);
});
