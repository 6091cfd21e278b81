import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort, processTree } from '@pga/local-stack';

const root = path.resolve(import.meta.dirname, '../..');

export interface RunningStack extends AsyncDisposable {
  adminUrl: string;
  ingestUrl: string;
  writerUrl: string;
  /** Everything scripts/start.ts printed so far. */
  output(): string;
  child: ChildProcess;
  /**
   * Ctrl-C as `npm start` gets it from a terminal: SIGINT to the script and every process of its
   * process group (its services; not servers it put in groups of their own), then once more to the
   * script, as scripts/bootstrap.mjs relays it. Resolves with the exit code. `SIGHUP`: the terminal
   * was closed instead.
   */
  stop(signal?: 'SIGINT' | 'SIGHUP'): Promise<number | null>;
  /** Every process under the script when stop() was called, in any process group. */
  stoppedTree: number[];
}

/** Runs scripts/start.ts as `npm start` runs it (`node --import tsx`, scripts/bootstrap.mjs) on free ports and waits for its banner. */
export async function startStack(env: Record<string, string>, timeoutMs = 180_000): Promise<RunningStack> {
  const [ingest, admin, writer] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/start.ts')], {
    cwd: root,
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
  const stoppedTree: number[] = [];
  const stop = async (signal: 'SIGINT' | 'SIGHUP' = 'SIGINT') => {
    if (child.exitCode === null && child.pid !== undefined) {
      // Not a process group of its own (an interrupted test run must still stop it with the rest),
      // so the terminal's group is the script's group: the script and the services it spawned.
      const tree = processTree(child.pid);
      stoppedTree.push(...tree.map((p) => p.pid));
      const group = tree[0]!.pgrp;
      for (const p of tree) {
        if (p.pgrp !== group) continue;
        try {
          process.kill(p.pid, signal);
        } catch (err) {
          // Gone since the tree was listed (a short-lived child): as a terminal's Ctrl-C would find it.
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (child.exitCode === null) child.kill(signal);
    }
    return exited;
  };
  return {
    adminUrl: `http://127.0.0.1:${admin}`,
    ingestUrl: `http://127.0.0.1:${ingest}`,
    writerUrl: `http://127.0.0.1:${writer}`,
    output: () => out,
    child,
    stop,
    stoppedTree,
    [Symbol.asyncDispose]: async () => void (await stop()),
  };
}
