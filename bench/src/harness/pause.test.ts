import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { readProc } from '@pga/local-stack';
import { freezeTree, throttleTree } from './pause';
import { treePids } from './proc';

let children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children) c.kill('SIGKILL');
  children = [];
});

/** A shell with a child of its own, both sleeping: a tree like PostgreSQL's postmaster and backends. */
async function sleepingTree(): Promise<{ root: number; pids: number[] }> {
  const child = spawn('sh', ['-c', 'sleep 30 & wait'], { stdio: 'ignore' });
  children.push(child);
  for (let i = 0; i < 100; i++) {
    const pids = treePids(child.pid!);
    if (pids.length >= 2) return { root: child.pid!, pids };
    await sleep(10);
  }
  throw new Error('the test tree did not start');
}

const states = (pids: number[]) => pids.map((pid) => readProc(pid)?.state);

/** Samples the tree's states every few ms while `work` runs: which states each process was seen in. */
async function watch(pids: number[], work: Promise<unknown>): Promise<Set<string>[]> {
  const seen = pids.map(() => new Set<string>());
  let done = false;
  void work.finally(() => (done = true));
  while (!done) {
    states(pids).forEach((s, i) => s && seen[i]!.add(s));
    await sleep(3);
  }
  await work;
  return seen;
}

describe('pausing a process tree (pg-stall)', () => {
  it('freezes every process of the tree and resumes them all', async () => {
    const { root, pids } = await sleepingTree();
    const seen = await watch(pids, freezeTree(root, 200));
    for (const s of seen) expect(s.has('T')).toBe(true);
    expect(states(pids).filter((s) => s === 'T')).toEqual([]);
  });

  it('throttles: the tree is stopped for part of each period and running again at the end', async () => {
    const { root, pids } = await sleepingTree();
    const work = throttleTree(root, 600, 20, 100);
    const seen = await watch(pids, work);
    const result = await work;
    // Stopped (T) and running again (S, or R for a moment after SIGCONT) within the window.
    for (const s of seen) expect(s.has('T') && (s.has('S') || s.has('R'))).toBe(true);
    expect(result.periods).toBeGreaterThanOrEqual(4);
    // Runs 20 of every 100 ms; timers only ever overshoot, so the share is at least that.
    expect(result.runShare).toBeGreaterThanOrEqual(0.15);
    expect(result.runShare).toBeLessThan(0.8);
    expect(states(pids).filter((s) => s === 'T')).toEqual([]);
  });
});
