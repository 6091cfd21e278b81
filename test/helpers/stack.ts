import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort } from '@pga/local-stack';

const root = path.resolve(import.meta.dirname, '../..');

export interface RunningStack extends AsyncDisposable {
  adminUrl: string;
  ingestUrl: string;
  writerUrl: string;
  /** Everything scripts/start.ts printed so far. */
  output(): string;
  child: ChildProcess;
  /** Sends SIGINT to its whole process group, as a terminal's Ctrl-C does, and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Runs scripts/start.ts as `npm start` runs it (`node --import tsx`, scripts/bootstrap.mjs) on free
 * ports, in a process group of its own like a terminal's foreground job, and waits for its banner.
 */
export async function startStack(env: Record<string, string>, timeoutMs = 180_000): Promise<RunningStack> {
  const [ingest, admin, writer] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/start.ts')], {
    cwd: root,
    detached: true,
    env: {
      PATH: process.env.PATH,
      INGEST_PORT: String(ingest),
      ADMIN_PORT: String(admin),
      WRITER_PORT: String(writer),
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stack did not start in ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const check = () => {
      if (out.includes('Press Ctrl-C to stop')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`stack exited with ${code} before starting:\n${out}`));
    });
  });
  const stop = async () => {
    if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGINT');
    return exited;
  };
  return {
    adminUrl: `http://127.0.0.1:${admin}`,
    ingestUrl: `http://127.0.0.1:${ingest}`,
    writerUrl: `http://127.0.0.1:${writer}`,
    output: () => out,
    child,
    stop,
    [Symbol.asyncDispose]: async () => void (await stop()),
  };
}
