import pg from 'pg';
import { poolConfigFromUrl } from '@pga/db';

export interface PgProbe {
  /**
   * A `SELECT 1` (reading PostgreSQL's clock) on the probe's own connection (opened first if there is none), within `timeoutMs`
   * from the call, connecting included; rejects otherwise.
   */
  ping(): Promise<void>;
  /** Closes the connection; a later ping opens a new one. */
  close(): Promise<void>;
}

/**
 * Readiness's own PostgreSQL connection, apart from the writer's pool: a pool whose every
 * connection is held (statements waiting on a lock, a long COPY) queues a pooled `SELECT 1` behind
 * them, which read as "PostgreSQL unreachable" though PostgreSQL answers. This one connection is
 * used by nothing else, so it answers unless PostgreSQL itself does not.
 *
 * One connection, kept open between checks (a PostgreSQL at max_connections still takes the
 * probe's ping); lost (an error, a server restart), it is opened again by the next ping. A ping not
 * answered within `timeoutMs` destroys the connection, so a half-open socket (failover, partition)
 * is not pinged again and the next check opens a fresh one.
 */
export function createPgProbe(
  databaseUrl: string,
  {
    timeoutMs = 2000,
    applicationName = 'pga-writer-readiness',
    onClock,
  }: {
    timeoutMs?: number;
    applicationName?: string;
    /** Each answered ping's clock reading: local ms before it, PostgreSQL's `clock_timestamp()` in ms, local ms after. */
    onClock?: (sentAt: number, serverMs: number, answeredAt: number) => void;
  } = {},
): PgProbe {
  let client: pg.Client | undefined;
  // The connection being opened, and the promise of it, shared by the pings that wait for it.
  let opening: { client: pg.Client; done: Promise<pg.Client> } | undefined;

  const drop = (c: pg.Client) => {
    if (client === c) client = undefined;
    if (opening?.client === c) opening = undefined;
    c.connection.stream.destroy();
  };

  const open = (): Promise<pg.Client> => {
    if (client) return Promise.resolve(client);
    if (opening) return opening.done;
    const c = new pg.Client({
      ...poolConfigFromUrl(databaseUrl),
      application_name: applicationName,
      connectionTimeoutMillis: timeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    // An idle connection's error (the server restarting) must not crash the process; the next
    // ping opens a new one.
    c.on('error', () => drop(c));
    c.on('end', () => drop(c));
    const done = c.connect().then(
      () => {
        if (opening?.client !== c) throw new Error('connection abandoned');
        opening = undefined;
        client = c;
        return c;
      },
      (err: unknown) => {
        drop(c);
        throw err;
      },
    );
    opening = { client: c, done };
    return done;
  };

  return {
    async ping() {
      let timer: NodeJS.Timeout | undefined;
      let used: pg.Client | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          // A connection that did not answer, or did not open, in time is not waited for again
          // (half-open, or stuck): the next ping opens a new one.
          const late = used ?? opening?.client;
          if (late) drop(late);
          reject(new Error(`PostgreSQL did not answer the readiness probe within ${timeoutMs} ms`));
        }, timeoutMs);
        timer.unref();
      });
      try {
        await Promise.race([
          (async () => {
            const c = await open();
            used = c;
            try {
              // `SELECT 1` that also says PostgreSQL's time (the writer's clock against it).
              const sentAt = Date.now();
              const { rows } = await c.query<{ ms: number }>('SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS ms');
              onClock?.(sentAt, Number(rows[0]?.ms), Date.now());
            } catch (err) {
              // `SELECT 1` fails only when the connection does (terminated, reset): the FATAL that
              // ends it can come as this query's error, before the socket's end, and the next ping
              // would fail on it again. It is not used again.
              drop(c);
              throw err;
            }
          })(),
          timeout,
        ]);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      if (opening) drop(opening.client);
      const c = client;
      if (!c) return;
      client = undefined;
      // Said goodbye (Terminate) when the server answers; cut off when it does not in time.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([c.end(), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]).catch(() => undefined);
      clearTimeout(timer);
      drop(c);
    },
  };
}
