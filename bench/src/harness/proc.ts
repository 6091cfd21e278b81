import { readFileSync } from 'node:fs';
import { processTable, processTree, readProc, type ProcEntry } from '@pga/local-stack';

/** Linux clock ticks per second for /proc CPU times (getconf CLK_TCK; 100 on every mainstream kernel). */
const CLK_TCK = 100;

/** CPU ticks and resident memory of a process and all its descendants. */
export interface TreeSample {
  ticks: number;
  rssBytes: number;
  pids: number;
}

/** Samples several process trees at once (one /proc scan). */
export function sampleTrees(roots: Record<string, number>): Record<string, TreeSample> {
  const procs = processTable();
  const children = new Map<number, ProcEntry[]>();
  for (const p of procs) {
    const list = children.get(p.ppid) ?? [];
    list.push(p);
    children.set(p.ppid, list);
  }
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const out: Record<string, TreeSample> = {};
  for (const [name, root] of Object.entries(roots)) {
    const sample: TreeSample = { ticks: 0, rssBytes: 0, pids: 0 };
    const stack = byPid.has(root) ? [byPid.get(root)!] : [];
    while (stack.length) {
      const p = stack.pop()!;
      sample.ticks += p.ticks;
      sample.rssBytes += p.rssBytes;
      sample.pids++;
      stack.push(...(children.get(p.pid) ?? []));
    }
    out[name] = sample;
  }
  return out;
}

/**
 * CPU ticks of this process alone, without its live children, but with those it has waited for
 * (cutime/cstime): a service stopped between scenarios, a pgbench run, initdb.
 */
export const ownTicks = (): number => readProc(process.pid)?.ticks ?? 0;

/** Busy and total CPU ticks of the whole machine (/proc/stat, all cores). */
export function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'latin1').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/**
 * CPU (in cores) used by each named process tree, by this process alone ("generator"), by the whole
 * machine, and by everything else ("others": other engineers' work on a shared machine), over a window.
 */
export function startCpuWindow(roots: () => Record<string, number>) {
  const t0 = Date.now();
  const before = sampleTrees(roots());
  const self0 = ownTicks();
  const m0 = machineTicks();
  return {
    stop(): Record<string, number> {
      const seconds = (Date.now() - t0) / 1000;
      const after = sampleTrees(roots());
      const m1 = machineTicks();
      const out: Record<string, number> = {};
      // The bench process alone (the load generator), without the servers it spawned.
      out.generator = Math.max(0, (ownTicks() - self0) / CLK_TCK / seconds);
      let ours = out.generator;
      for (const name of Object.keys(after)) {
        const d = (after[name]!.ticks - (before[name]?.ticks ?? 0)) / CLK_TCK / seconds;
        out[name] = Math.max(0, d);
        ours += out[name]!;
      }
      out.machine = (m1.busy - m0.busy) / CLK_TCK / seconds;
      out.others = Math.max(0, out.machine - ours);
      return out;
    },
  };
}

/** PIDs of a process and all its descendants. */
export function treePids(root: number): number[] {
  return processTree(root).map((p) => p.pid);
}
