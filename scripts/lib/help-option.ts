import { parseArgs } from 'node:util';

/**
 * A script configured by the environment alone: `--help` / `-h` prints `usage` and exits 0 before
 * the environment is read (without it, a missing variable answered `--help` with a configuration
 * error); any other option exits 2 with `usage`.
 */
export function helpOrExit(name: string, usage: string): void {
  try {
    const { values } = parseArgs({ options: { help: { type: 'boolean', short: 'h' } }, strict: true });
    if (values.help) {
      console.log(usage);
      process.exit(0);
    }
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}\n\n${usage}`);
    process.exit(2);
  }
}
