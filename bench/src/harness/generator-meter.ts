import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { GeneratorUsage } from './model';

/** Event-loop utilisation above which the generator counts as saturated (its figures are lower bounds). */
export const SATURATED_ELU = 0.9;

/**
 * Measures this process's own CPU (all threads: pg/libuv included) and its event-loop utilisation
 * over a window: the load generator's share of a 2-core machine where it competes with the system
 * under test.
 */
export function startGeneratorMeter(): { stop(): GeneratorUsage } {
  const cpu0 = process.cpuUsage();
  const elu0: EventLoopUtilization = performance.eventLoopUtilization();
  const t0 = performance.now();
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  return {
    stop() {
      delay.disable();
      const cpu = process.cpuUsage(cpu0);
      const elu = performance.eventLoopUtilization(elu0);
      const wallUs = (performance.now() - t0) * 1000;
      const cpuCores = wallUs > 0 ? (cpu.user + cpu.system) / wallUs : 0;
      // The histogram is in ns and includes the 1 ms sampling resolution itself.
      const late = (ns: number) => Math.max(0, ns / 1e6 - 1);
      return {
        cpuCores,
        elu: elu.utilization,
        saturated: elu.utilization >= SATURATED_ELU,
        ...(delay.count > 0 ? { loopDelayP99Ms: late(delay.percentile(99)), loopDelayMaxMs: late(delay.max) } : {}),
      };
    },
  };
}
