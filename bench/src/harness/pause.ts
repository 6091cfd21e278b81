import { setTimeout as sleep } from 'node:timers/promises';
import { treePids } from './proc';

/** Sends `signal` to each PID; a process that exited meanwhile is skipped. */
function signalAll(pids: Iterable<number>, signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // exited meanwhile
    }
  }
}

/** Freezes a process tree (SIGSTOP) for `ms`, then resumes it: a server that stops answering. */
export async function freezeTree(root: number, ms: number): Promise<void> {
  const pids = treePids(root);
  signalAll(pids, 'SIGSTOP');
  try {
    await sleep(ms);
  } finally {
    signalAll(pids, 'SIGCONT');
  }
}

export interface ThrottleResult {
  /** Periods run. */
  periods: number;
  /** Share of the window the tree was allowed to run, as measured (timers overshoot). */
  runShare: number;
}

/**
 * Slows a process tree for `ms`: in every `periodMs` it runs for `runMs` and is stopped (SIGSTOP)
 * for the rest — how a CPU-throttled database (burst credits spent, a noisy neighbour) looks to its
 * clients: everything still completes, at a fraction of the rate, with stalls up to the stopped
 * part of a period. The tree is re-read each period (a backend forked meanwhile is stopped too) and
 * every process ever stopped is resumed at the end, whatever happens.
 */
export async function throttleTree(root: number, ms: number, runMs: number, periodMs: number): Promise<ThrottleResult> {
  const stopped = new Set<number>();
  const start = performance.now();
  const end = start + ms;
  let ran = 0;
  let periods = 0;
  try {
    for (let now = start; now < end; now = performance.now()) {
      periods++;
      const runUntil = Math.min(now + runMs, end);
      await sleep(runUntil - now);
      ran += performance.now() - now;
      if (performance.now() >= end) break;
      const pids = treePids(root);
      for (const pid of pids) stopped.add(pid);
      signalAll(pids, 'SIGSTOP');
      await sleep(Math.max(0, Math.min(now + periodMs, end) - performance.now()));
      signalAll(pids, 'SIGCONT');
    }
  } finally {
    signalAll(stopped, 'SIGCONT');
  }
  return { periods, runShare: Math.min(1, ran / (performance.now() - start)) };
}
