import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
const HELP = { help: { type: 'boolean', short: 'h' } } as const;
/** What `parseArgs` answers for `options` (its own result type is not exported). */
type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O; strict: true }>>['values'];

/**
 * A script configured by the environment (and, when given, `options`): `--help` / `-h` prints
 * `usage` and exits 0 before the environment is read (without it, a missing variable answered
 * `--help` with a configuration error); any other option, or a positional argument, exits 2 with
 * `usage`. Answers the values of `options` given.
 */
export function helpOrExit<const O extends Options = Record<never, never>>(name: string, usage: string, options?: O): Values<O> {
  try {
    const { values } = parseArgs({ options: { ...options, ...HELP }, strict: true });
    if ((values as { help?: boolean }).help) {
      console.log(usage);
      process.exit(0);
    }
    return values as Values<O>;
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}\n\n${usage}`);
    process.exit(2);
  }
}
