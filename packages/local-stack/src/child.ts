import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream } from 'node:fs';

/** How a server is run as a child process (PostgreSQL, Redis). */
export interface ServerProcessOptions {
  /**
   * Run the server in a process group of its own, so a terminal's Ctrl-C (sent to the whole
   * foreground group) reaches only the caller, which then stops it after the services using it
   * (`npm start`, the bench). The caller must stop it; default false (Ctrl-C stops it directly).
   */
  ownProcessGroup?: boolean;
}

const outputTails = new WeakMap<ChildProcess, string>();
const TAIL_CHARS = 2000;

/** Spawns a server whose output goes to `logFile`; returns the child (stop it by PID). */
export function spawnServer(command: string, args: string[], logFile: string, options: SpawnOptions = {}): ChildProcess {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  // Both into one log, which ends once both have ended ('close'): with the default `end: true` the
  // first stream to end closed the log under the other, and its last lines were a write after end.
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  child.once('close', () => log.end());
  // The end of its output is also kept here: an error about a failed start can quote it even when
  // the log's folder is removed right after.
  const keep = (chunk: Buffer) =>
    outputTails.set(child, ((outputTails.get(child) ?? '') + chunk.toString('utf8')).slice(-TAIL_CHARS));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return child;
}

/** The last `lines` lines the server printed (after its 'close' event: all of them), each indented. */
export function outputTail(child: ChildProcess, lines = 5): string {
  const tail = (outputTails.get(child) ?? '').trimEnd().split('\n').slice(-lines);
  return tail.join('').trim() ? `\n  ${tail.join('\n  ')}` : '';
}

/** Sends `signal` to the child by PID and waits for it to exit (SIGKILL after `graceMs`). */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, signal);
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * Waits for a freshly spawned server with `ready`; if that fails (timeout, exit at start), the
 * server is stopped before the error is rethrown, so a failed start leaves nothing running.
 */
export async function readyOrStopped(child: ChildProcess, ready: () => Promise<void>): Promise<void> {
  try {
    await ready();
  } catch (err) {
    await stopChild(child, 'SIGTERM', 5000).catch(() => undefined);
    throw err;
  }
}

/**
 * Starts servers concurrently and answers them all, or none: if one fails, those that did start are
 * stopped and the first failure is rethrown (PostgreSQL must not be left running because Redis was
 * missing).
 */
export async function startTogether<T extends { stop(): Promise<void> }>(starts: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failed) return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
  await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop().catch(() => undefined) : undefined)));
  throw failed.reason;
}
