import type { Pool, PoolClient } from './pool';

/** A client checked out of the pool by `checkOut`. */
export interface CheckedOutClient {
  client: PoolClient;
  /** The error the connection reported while checked out (the server ended the session, the socket broke). */
  readonly lost: Error | undefined;
  /**
   * Closes the socket at once, without a word to the server (a half-open connection never answers):
   * every query in flight rejects, and `release` then discards the client.
   */
  destroy(): void;
  /** Gives the client back to the pool, or discards it when `err` is given or the connection was lost. */
  release(err?: unknown): void;
}

/**
 * `pool.connect()` with an 'error' listener for as long as the client is out. pg-pool listens only
 * while a client is idle; a checked-out client whose server connection ends (pg_terminate_backend, a
 * restart, a failover) emits 'error', and with no listener that is an uncaught exception: the process
 * exits. The query that was running, or the next one, rejects anyway: that is where callers learn of it.
 */
export async function checkOut(pool: Pool): Promise<CheckedOutClient> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (err: Error) => {
    lost ??= err;
  };
  client.on('error', onError);
  let released = false;
  return {
    client,
    get lost() {
      return lost;
    },
    destroy() {
      client.connection.stream.destroy();
    },
    release(err) {
      if (released) return;
      released = true;
      // The pool attaches its idle listener again as it takes the client back.
      client.off('error', onError);
      const reason = err ?? lost;
      client.release(reason === undefined ? undefined : reason instanceof Error ? reason : true);
    },
  };
}
