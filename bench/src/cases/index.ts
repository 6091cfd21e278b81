import type { Scenario } from '../harness/scenario';
import { copyLimit } from './copy-limit/copy-limit';
import { designBaseline } from './design-baseline/design-baseline';

/** Every scenario, in the order the suite runs them. */
export const SCENARIOS: Scenario[] = [copyLimit, designBaseline];
