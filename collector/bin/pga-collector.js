#!/usr/bin/env node
// Package bin: runs the TypeScript sources through tsx (the repo has no build step for services).
import { register } from 'tsx/esm/api';

// Read before the sources load (tsx takes a while): a wrapper killed meanwhile is noticed too.
const parentPid = process.ppid;
register();
const { main } = await import('../src/cli/main.ts');
try {
  process.exitCode = await main(process.argv.slice(2), process.env, parentPid);
} catch (err) {
  // An unexpected failure (unwritable spool folder, …): one line for the operator, not a stack.
  console.error(`pga-collector: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
