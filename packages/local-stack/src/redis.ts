import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { outputTail, readyOrStopped, spawnServer, stopChild, type ServerProcessOptions } from './child';
import { findExecutable } from './find-executable';
import { exitedAtStart } from './free-port';
import { waitFor } from './wait-for';

export interface StartRedisOptions extends ServerProcessOptions {
  dataDir: string;
  port: number;
  /** Append-only file on (durable queue); default true. */
  appendOnly?: boolean;
  /**
   * `requirepass`: every client must AUTH. Written to `auth.conf` (mode 0600) in `dataDir` and
   * given to redis-server as its config file, never on its command line (which any local user
   * reads in `ps` / `/proc/<pid>/cmdline`).
   */
  password?: string;
  /** `maxmemory`, e.g. "1gb"; default unlimited. */
  maxMemory?: string;
}

export interface RedisHandle {
  url: string;
  port: number;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

export function redisBinary(): string {
  const found = findExecutable('redis-server');
  if (!found) throw new Error('redis-server was not found: install it (apt-get install -y redis-server)');
  return found;
}

/** Smallest AOF that Redis rewrites (see startRedis). */
export const AOF_REWRITE_MIN_SIZE = '512mb';

export async function startRedis(options: StartRedisOptions): Promise<RedisHandle> {
  const dir = path.resolve(options.dataDir);
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, 'redis.log');
  const authFile = path.join(dir, 'auth.conf');
  if (options.password) {
    writeFileSync(authFile, `requirepass ${quoteConfigValue(options.password)}\n`, { mode: 0o600 });
    chmodSync(authFile, 0o600); // an existing file keeps its mode through writeFileSync
  } else rmSync(authFile, { force: true });
  const args = [
    // A config file, when given, must be redis-server's first argument.
    ...(options.password ? [authFile] : []),
    '--port',
    String(options.port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--save',
    '',
    '--appendonly',
    options.appendOnly === false ? 'no' : 'yes',
    '--appendfsync',
    'everysec',
    // The queue's data set stays small (the writer drains it within seconds) while its AOF grows
    // by every push body (~20 MB/s at full load). With the default 64 MB minimum, Redis rewrote the
    // AOF every ~3 s: each rewrite forks (10–74 ms with Redis's main thread stopped, in the
    // latency monitor) and its child re-encodes and compresses the data set — 28 % of Redis's CPU
    // in a perf profile of ingest-e2e. From 512 MB the AOF is rewritten ~8× less often, at the cost
    // of up to ~1 GB of AOF on disk and a few seconds more to replay it after a crash.
    '--auto-aof-rewrite-min-size',
    AOF_REWRITE_MIN_SIZE,
    '--maxmemory-policy',
    'noeviction',
    ...(options.maxMemory ? ['--maxmemory', options.maxMemory] : []),
  ];
  const child = spawnServer(redisBinary(), args, logFile, { cwd: dir, detached: options.ownProcessGroup === true });
  let exited = false;
  // 'close': it exited and all it printed has been read (outputTail has it).
  child.once('close', () => (exited = true));
  await readyOrStopped(child, () =>
    waitFor(`Redis on 127.0.0.1:${options.port} (log: ${logFile})`, async () => {
      if (exited) throw exitedAtStart('redis-server', options.port, logFile, (lines) => outputTail(child, lines));
      // Ready once it answers PING and is this child: another process's Redis listening on the port
      // (ours then exits, "Address already in use") answered PONG too, and the start returned a
      // handle to a server that was not running, its URL leading to someone else's data.
      const pid = await answeringPid(options.port, options.password);
      // Thrown, not false: should this last until the wait times out, its error says why.
      if (pid !== undefined && pid !== child.pid)
        throw new Error(`the Redis answering is pid ${pid}, not redis-server's ${child.pid}`);
      return pid === child.pid;
    }),
  );
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  return {
    url: `redis://${auth}127.0.0.1:${options.port}`,
    port: options.port,
    pid: child.pid!,
    logFile,
    stop: () => stopChild(child, 'SIGTERM'),
  };
}

/**
 * A redis.conf value in double quotes: printable ASCII as it is, any other byte (and the quote and
 * backslash) as a hex escape, which Redis's config parser (sdssplitargs) reads inside quotes.
 */
function quoteConfigValue(value: string): string {
  const plain = (b: number) => b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c;
  const bytes = [...Buffer.from(value, 'utf8')];
  return `"${bytes.map((b) => (plain(b) ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('')}"`;
}

/** A command as a RESP array: any bytes in its arguments (spaces, quotes) reach Redis as they are. */
function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/**
 * The pid of the Redis answering on 127.0.0.1:`port` once it serves commands (PING answered PONG,
 * not LOADING), from INFO server's process_id; undefined otherwise: no answer within 1 s, an error
 * reply, something not Redis, or the connection closed before the answers (without that last case a
 * server that closed the connection left the promise, and the start, waiting forever).
 */
function answeringPid(port: number, password?: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const expected = password ? 3 : 2;
    let data = Buffer.alloc(0);
    const done = (pid: number | undefined) => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(1000, () => done(undefined));
    socket.once('connect', () =>
      socket.write(`${password ? resp('AUTH', password) : ''}${resp('PING')}${resp('INFO', 'server')}`),
    );
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const replies = respReplies(data);
      if (replies === undefined) return done(undefined);
      if (replies.some((r) => r.error)) return done(undefined);
      if (replies.length < expected) return;
      if (replies[expected - 2]!.text !== 'PONG') return done(undefined);
      const pid = /^process_id:(\d+)/m.exec(replies[expected - 1]!.text)?.[1];
      done(pid === undefined ? undefined : Number(pid));
    });
    socket.once('error', () => done(undefined));
    socket.once('close', () => done(undefined));
  });
}

/** The complete simple, error and bulk replies at the start of `data` (undefined: one it cannot read). */
function respReplies(data: Buffer): { error: boolean; text: string }[] | undefined {
  const replies: { error: boolean; text: string }[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) return replies;
    const line = data.toString('utf8', at + 1, eol);
    const kind = String.fromCharCode(data[at]!);
    if (kind === '+' || kind === '-') {
      replies.push({ error: kind === '-', text: line });
      at = eol + 2;
    } else if (kind === '$') {
      const length = Number(line);
      if (data.length < eol + 2 + length + 2) return replies;
      replies.push({ error: false, text: data.toString('utf8', eol + 2, eol + 2 + length) });
      at = eol + 2 + length + 2;
    } else return undefined;
  }
}
