// Runs a TypeScript worker entry (workerData.entry) from source, for tests and tsx: worker threads
// do not take `--import tsx` from their execArgv. Bundled services never load this file.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
