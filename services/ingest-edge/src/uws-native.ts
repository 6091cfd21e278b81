import { createRequire } from 'node:module';
import path from 'node:path';
import 'uWebSockets.js';

const require = createRequire(import.meta.url);

/**
 * The uWebSockets.js native binary this process loaded, or undefined when uWebSockets.js fell back
 * to its Node implementation. This build (uWS.js 20.30) ships binaries for Node's ABIs 93, 108 and
 * 115 (Node 16, 18, 20) only; on any other Node, or when the binary does not load (a glibc too old)
 * or `UWS_USE_FALLBACK` is set, it prints a warning and goes on with a Node implementation that is
 * several times slower and lacks parts the edge uses (`pause`/`resume` throw "Not implemented").
 */
export function uwsNativeBinary(): string | undefined {
  const binaries = path.join(path.dirname(require.resolve('uWebSockets.js/package.json')), 'binaries') + path.sep;
  return Object.keys(require.cache).find((file) => file.startsWith(binaries) && file.endsWith('.node'));
}

/** Why the edge does not start on uWebSockets.js's Node fallback: undefined when the binary loaded. */
export function uwsFallbackRefusal(loaded = uwsNativeBinary()): string | undefined {
  if (loaded) return undefined;
  const asked = /^(1|true)$/i.test(process.env.UWS_USE_FALLBACK ?? '');
  return (
    `uWebSockets.js runs its Node fallback, not its native build (${asked ? 'UWS_USE_FALLBACK is set: unset it' : `none loads on Node ${process.version}, ABI ${process.versions.modules}`}): ` +
    'the ingest edge needs the native build, which this uWebSockets.js has for Node 20 (ABI 115) on Linux x64/arm64; run the edge on Node 20'
  );
}
