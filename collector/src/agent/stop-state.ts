import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeJsonFileAtomically } from './state-file';

/**
 * An admin `stop` outlives the agent process: it is recorded here until `resume` or `restart`, so a
 * restarted agent (SIGTERM + start, a reboot) does not collect again on its own.
 */
export const StopStateSchema = z.object({
  collector_id: z.string(),
  /** The command's id as the central sent it. */
  command_id: z.string().optional(),
  /** When the agent received it (ISO 8601). */
  stopped_at: z.string(),
});
export type StopState = z.infer<typeof StopStateSchema>;

export const stopFileOf = (stateDir: string) => path.join(stateDir, 'stopped.json');

/** The recorded stop of this collector, if any (a file left by another collector id is ignored). */
export function readStopState(stateDir: string, collectorId: string): StopState | undefined {
  let text: string;
  try {
    text = readFileSync(stopFileOf(stateDir), 'utf8');
  } catch {
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = StopStateSchema.safeParse(json);
  // Unreadable (a torn write cannot happen, see below, but a hand edit can): stay stopped, as the
  // file's presence says; the admin's resume/restart rewrites or removes it.
  if (!parsed.success) return { collector_id: collectorId, stopped_at: 'unknown' };
  return parsed.data.collector_id === collectorId ? parsed.data : undefined;
}

/** Records the stop atomically (temp file, fsync, rename) so a crash leaves either state, never half. */
export async function writeStopState(stateDir: string, state: StopState): Promise<void> {
  await writeJsonFileAtomically(stopFileOf(stateDir), state);
}

export async function clearStopState(stateDir: string): Promise<void> {
  await fs.rm(stopFileOf(stateDir), { force: true });
}
