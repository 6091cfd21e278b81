import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
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

interface ProcStat {
  pid: number;
  ppid: number;
  pgrp: number;
}

function procStats(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const entry of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state !== 'Z') stats.push({ pid: Number(entry), ppid: Number(ppid), pgrp: Number(pgrp) });
    } catch {
      // exited meanwhile
    }
  }
  return stats;
}

/** `root` and its live descendants. */
function processTree(root: number): ProcStat[] {
  const all = procStats();
  const tree = all.filter((p) => p.pid === root);
  for (let i = 0; i < tree.length; i++) tree.push(...all.filter((p) => p.ppid === tree[i]!.pid));
  return tree;
}

/** Whether a process with this PID is alive (not a zombie). */
export const alive = (pid: number): boolean => procStats().some((p) => p.pid === pid);

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
      for (const p of tree) if (p.pgrp === group) process.kill(p.pid, signal);
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
