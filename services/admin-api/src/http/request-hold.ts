import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { AppError } from '@pga/contracts';

/** Per socket, the releases waiting for its 'close' (one listener a socket, however many requests it carries). */
const releasesOnClose = new WeakMap<Socket, Set<() => void>>();

function releasesOf(socket: Socket): Set<() => void> {
  let waiting = releasesOnClose.get(socket);
  if (!waiting) {
    const set = new Set<() => void>();
    releasesOnClose.set(socket, set);
    socket.once('close', () => {
      releasesOnClose.delete(socket);
      for (const release of set) release();
    });
    waiting = set;
  }
  return waiting;
}

/**
 * Calls `release` once, on the first of: the answer sent or given up (the response's 'close'), the
 * connection gone (its socket's 'close'); both listeners are removed then. The response of a
 * pipelined request waits in Node's queue without a socket and emits no 'close' when the connection
 * dies: until 2026-12-08 its share (or slot) stayed taken for the life of the process, and a few
 * hundred anonymous pipelined requests made every POST answer 503 (review33 F1). False, released at
 * once, when the connection is gone already.
 */
export function holdUntilAnsweredOrGone(req: IncomingMessage, res: ServerResponse, release: () => void): boolean {
  const socket = req.socket;
  if (socket.destroyed) {
    release();
    return false;
  }
  const waiting = releasesOf(socket);
  const done = () => {
    res.off('close', done);
    waiting.delete(done);
    release();
  };
  waiting.add(done);
  res.once('close', done);
  return true;
}

/** What a held request (holdRequest) still does, and whether its answer is sent or its client gone. */
interface Held {
  /** Session lookups and procedures of the request running now (whileInProgress). */
  running: number;
  /** Answered, or its connection gone: nothing more starts for it. */
  ended: boolean;
  /** Aborted when it ended: a session lookup still waiting for its turn gives it up. */
  gone: AbortController;
  /** Released once its session lookup has settled, answered or not (a live feed). */
  untilLookedUp: boolean;
  release: () => void;
}

const heldRequests = new WeakMap<IncomingMessage, Held>();

/**
 * Holds `release` (a request's place in ADMIN_SESSION_MAX_IN_FLIGHT) until the request is answered
 * or its connection gone (holdUntilAnsweredOrGone) *and* the session lookup and procedures it started
 * (whileInProgress) have settled; with `untilLookedUp` (a live feed: open for as long as it is
 * watched, and capped by LIVE_FEED_MAX_PER_SESSION once its session is known) also as soon as its
 * session lookup has settled. Until 2026-12-08 the place was given back when the client closed its
 * connection, while the request's lookup kept its place in the lookups' queue and its procedure
 * still ran: a client that sent and closed at once, over and over, filled the queue with one session
 * and other admins were answered 503 (review34 F2). False, released at once, when the connection is
 * gone already.
 */
export function holdRequest(
  req: IncomingMessage,
  res: ServerResponse,
  release: () => void,
  { untilLookedUp = false }: { untilLookedUp?: boolean } = {},
): boolean {
  const held: Held = { running: 0, ended: false, gone: new AbortController(), untilLookedUp, release };
  const kept = holdUntilAnsweredOrGone(req, res, () => {
    held.ended = true;
    held.gone.abort(requestGone());
    if (held.running === 0) release();
  });
  if (kept) heldRequests.set(req, held);
  return kept;
}

/** Why a held request's lookup or procedure did not start (or gave up waiting): nobody reads the answer. */
export const requestGone = () => new AppError('UNAVAILABLE', 'the client closed this request before it was served');

/**
 * Runs `work` (a session lookup, a procedure) for `req`, its place held (holdRequest) until `work`
 * settles; `signal` is aborted when the client goes away (a lookup still waiting gives up its turn).
 * Throws requestGone without running it when the request was answered or its client went away
 * already. A request holding no place (no signed session cookie) runs it as it is. `kind`: a
 * 'lookup' settled releases a live feed's place (holdRequest's `untilLookedUp`).
 */
export async function whileInProgress<T>(
  req: IncomingMessage,
  work: (signal: AbortSignal | undefined) => Promise<T>,
  kind: 'lookup' | 'procedure' = 'procedure',
): Promise<T> {
  const held = heldRequests.get(req);
  if (!held) return work(undefined);
  const { release } = held;
  if (held.ended) throw requestGone();
  held.running++;
  try {
    return await work(held.gone.signal);
  } finally {
    held.running--;
    if (held.running === 0 && (held.ended || (kind === 'lookup' && held.untilLookedUp))) release();
  }
}
