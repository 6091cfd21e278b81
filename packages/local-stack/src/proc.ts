import { readdirSync, readFileSync } from 'node:fs';

const PAGE = 4096;

/** One process as /proc/<pid>/stat shows it (Linux). */
export interface ProcEntry {
  pid: number;
  ppid: number;
  /** Process group. */
  pgrp: number;
  /** State letter: R, S, D, Z (zombie) … */
  state: string;
  /** utime + stime + cutime + cstime, in clock ticks (children that exited still count). */
  ticks: number;
  rssBytes: number;
}

/** The process with this PID, or undefined once it is gone. */
export function readProc(pid: number): ProcEntry | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // f[0] = state (field 3), so field n is f[n - 3]
    return {
      pid,
      ppid: Number(f[1]),
      pgrp: Number(f[2]),
      state: f[0] ?? '',
      ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
      rssBytes: Number(f[21]) * PAGE,
    };
  } catch {
    return undefined;
  }
}

/** Every process of the machine (one /proc scan). */
export function processTable(): ProcEntry[] {
  const out: ProcEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProc(Number(name));
    if (p) out.push(p);
  }
  return out;
}

/** A process and all its descendants, the root first. */
export function processTree(root: number): ProcEntry[] {
  const procs = processTable();
  const tree = procs.filter((p) => p.pid === root);
  for (let i = 0; i < tree.length; i++) tree.push(...procs.filter((p) => p.ppid === tree[i]!.pid));
  return tree;
}

/** Whether the process with this PID still runs (a zombie does not). */
export const alive = (pid: number): boolean => {
  const p = readProc(pid);
  return p !== undefined && p.state !== 'Z';
};
