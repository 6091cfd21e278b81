import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { root } from './helpers';

export interface ChildWriter extends AsyncDisposable {
  child: ChildProcess;
  /** Resolves with the first JSON log line whose msg contains `text`. */
  waitForLog(text: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  output(): string;
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the process exits by itself. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * The real writer (services/writer/src/main.ts) as a child process. Run as `node --import tsx` so the
 * PID is the writer itself (the tsx CLI would put a second process between us and the writer, and a
 * SIGKILL would then orphan the real one).
 */
export function spawnWriter(env: Record<string, string>): ChildWriter {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'services/writer/src/main.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const lines: Record<string, unknown>[] = [];
  const listeners = new Set<() => void>();
  let buffer = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
    buffer += d;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const kill = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, signal);
    return exited;
  };
  return {
    child,
    output: () => out,
    kill,
    exited,
    waitForLog(text, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.find((l) => typeof l.msg === 'string' && l.msg.includes(text));
          if (hit) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(hit);
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`writer did not log "${text}" within ${timeoutMs} ms:\n${out}`));
        }, timeoutMs);
        listeners.add(check);
        check();
        void exited.then(() => {
          if (listeners.has(check)) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`writer exited before logging "${text}":\n${out}`));
          }
        });
      });
    },
    [Symbol.asyncDispose]: async () => void (await kill('SIGKILL')),
  };
}
