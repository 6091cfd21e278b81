/**
 * How a service runs outside the tests (`npm start`, the bench): one esbuild bundle per service,
 * run by plain `node`. `node --import tsx` costs every process a TypeScript loader — an esbuild
 * child process (~12 MiB), a module-loader thread with its own V8 isolate, and the loader's
 * transpile caches: ~30 MiB per process (the two-process edge, freshly started: 244 → ~180 MiB).
 * A bundle of our own code is loaded like any JavaScript.
 * Tests keep running the sources with tsx.
 *
 * Only the workspace's own code (relative imports and `@pga/*` packages) goes into the bundle;
 * third-party packages stay `import`s resolved from node_modules, so native addons (uWS), worker
 * files (pino transports) and package-relative paths behave exactly as they do from source.
 * The bundle is written to `<service>/dist/main.mjs`, the same depth as `<service>/src/main.ts`:
 * `import.meta.url`-relative paths in bundled code (@pga/db's migrations folder, the admin
 * service's web/dist) resolve to the same folders as from source.
 */
import { renameSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, stop, type Plugin } from 'esbuild';

export interface ServiceSpec {
  /** Entry relative to the repository root. */
  entry: string;
  /** V8/Node flags the service is run with (cluster workers inherit them from the primary). */
  nodeFlags: readonly string[];
  /** Worker-thread entries (`<service>/src/<file>.ts`), bundled next to the service's own. */
  workers?: readonly string[];
}

/**
 * V8 runs its garbage collector on helper threads as well as the main one. On the 2-core machine
 * the edge processes, the writer, Redis, PostgreSQL (and the bench's load generator) already want
 * more CPU than there is, so a collection waits for helper threads the scheduler has not run yet:
 * scavenges of a few MB took 15–35 ms of wall time. Collecting on the main thread alone
 * (`--single-threaded-gc`) raised the sustained end-to-end throughput from 2,159 / 2,557 to
 * 3,042 / 3,184 pushes/s (ingest-e2e, 2 runs each, same commit) and cut the edge's CPU per push
 * (ingest-edge: 201 → 175 µs, medians of 3). With more cores than busy processes the helpers would
 * pay off again; the flag is one line here.
 */
const GC_FLAGS = ['--single-threaded-gc'] as const;

/**
 * The edge's V8 heap settings (services/ingest-edge/README.md, "Memory"). An idle connection holds
 * ~1 KiB; what a 10,000-connection fleet costs beyond that is collection slack from the burst of
 * hellos. V8 lets the old generation grow to up to 4× its live size before the next full
 * collection; a fixed factor of 1.5 instead (`--heap-growing-percent=50`): 290 → 259 MiB for the
 * fleet. Capping the young generation as well (`--max-semi-space-size=8`, 221 MiB) was tried and
 * dropped: scavenges then copy the pushes waiting in a packing window twice as often, and the edge's
 * CPU per push rose from 157 to 179 µs (ingest-edge scenario, 3 runs each, quiet machine).
 */
export const EDGE_NODE_FLAGS = ['--heap-growing-percent=50', ...GC_FLAGS] as const;

export const SERVICES: Readonly<Record<string, ServiceSpec>> = {
  'ingest-edge': {
    entry: 'services/ingest-edge/src/main.ts',
    nodeFlags: EDGE_NODE_FLAGS,
    workers: ['services/ingest-edge/src/large-push-worker.ts'],
  },
  writer: { entry: 'services/writer/src/main.ts', nodeFlags: GC_FLAGS },
  'admin-api': { entry: 'services/admin-api/src/main.ts', nodeFlags: [] },
};

/** Bundles our code, leaves every third-party package (and node:*) as an import. */
const ownCodeOnly: Plugin = {
  name: 'own-code-only',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) =>
      args.path.startsWith('@pga/') ? undefined : { path: args.path, external: true },
    );
  },
};

/** The bundle's path for an entry `X/src/main.ts`: `X/dist/main.mjs`. */
export function bundlePath(root: string, entry: string): string {
  const dir = path.dirname(entry);
  if (path.basename(dir) !== 'src') throw new Error(`service entry must be <service>/src/<file>.ts: ${entry}`);
  return path.join(root, path.dirname(dir), 'dist', `${path.basename(entry, '.ts')}.mjs`);
}

/**
 * Builds the bundles of a service — its entry and its worker-thread entries — (always: it takes
 * well under a second, and a stale bundle is never run) and returns the node arguments that run it.
 */
export async function buildService(root: string, spec: ServiceSpec): Promise<string[]> {
  const [outfile] = await Promise.all([spec.entry, ...(spec.workers ?? [])].map((entry) => buildBundle(root, entry)));
  return [...spec.nodeFlags, outfile!];
}

/**
 * Bundles one entry to `bundlePath`. Written to a temporary file and renamed, so a concurrent start
 * never reads a half-written bundle.
 */
async function buildBundle(root: string, entry: string): Promise<string> {
  const outfile = bundlePath(root, entry);
  const result = await build({
    entryPoints: [path.join(root, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    plugins: [ownCodeOnly],
  });
  const code = result.outputFiles[0]?.contents;
  if (!code) throw new Error(`esbuild produced nothing for ${entry}`);
  mkdirSync(path.dirname(outfile), { recursive: true });
  const tmp = `${outfile}.${process.pid}.tmp`;
  writeFileSync(tmp, code);
  renameSync(tmp, outfile);
  return outfile;
}

const builds = new Map<string, Promise<string[]>>();

/** `buildService` once per service per process (a bench starts the same service many times). */
export function builtServiceArgs(root: string, spec: ServiceSpec): Promise<string[]> {
  let args = builds.get(spec.entry);
  if (!args) builds.set(spec.entry, (args = buildService(root, spec)));
  return args;
}

/** Ends esbuild's helper process once every build is done (it would otherwise live as long as we do). */
export const stopBuilding = (): Promise<void> => stop();

/** The spec of the service whose entry this is, if it is one of ours. */
export function serviceByEntry(entry: string): ServiceSpec | undefined {
  return Object.values(SERVICES).find((s) => s.entry === entry);
}

// `tsx scripts/lib/service-build.ts [service…]`: builds them (default all) and prints how each is run.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = path.resolve(import.meta.dirname, '../..');
  const names = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(SERVICES);
  for (const name of names) {
    const spec = SERVICES[name];
    if (!spec) throw new Error(`unknown service ${name}; one of ${Object.keys(SERVICES).join(', ')}`);
    const args = await buildService(root, spec);
    console.log(`${name}: node ${args.map((a) => (path.isAbsolute(a) ? path.relative(root, a) : a)).join(' ')}`);
  }
}
