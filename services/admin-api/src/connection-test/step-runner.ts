import { StageFailure, type ConnectionStage } from './result';

/** Runs one stage with the time left before the test's deadline; records how it went. */
export type StepRunner = <T>(stage: ConnectionStage, fn: (remaining: () => number) => Promise<T>) => Promise<T>;

export function createStepRunner(timeoutMs: number) {
  const started = performance.now();
  const stages: { stage: ConnectionStage; ok: boolean; ms: number }[] = [];
  const remaining = () => Math.max(0, started + timeoutMs - performance.now());
  const step: StepRunner = async (stage, fn) => {
    const t0 = performance.now();
    const record = (ok: boolean) => stages.push({ stage, ok, ms: Math.round(performance.now() - t0) });
    if (remaining() <= 0) {
      record(false);
      throw new StageFailure(stage, `the test ran out of time (${timeoutMs / 1000} s) before this stage`);
    }
    try {
      const result = await fn(remaining);
      record(true);
      return result;
    } catch (err) {
      record(false);
      throw err;
    }
  };
  return { step, stages, elapsed: () => Math.round(performance.now() - started) };
}
