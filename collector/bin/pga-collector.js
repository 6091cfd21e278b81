#!/usr/bin/env node
// Package bin: runs the TypeScript sources through tsx (the repo has no build step for services).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
