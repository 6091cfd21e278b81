import { unstorableTextReason } from '@pga/contracts';

/**
 * How deep an input may nest. No procedure's schema is more than a few levels deep (the deepest,
 * collectors.register's `tags`, is two), so this only bounds the walk below: a 32 MiB body could
 * otherwise nest millions of levels.
 */
export const MAX_INPUT_DEPTH = 64;

export interface InputProblem {
  /** Path of the offending string (`tags.1`), absent for the input itself or a nesting too deep. */
  field?: string;
  /** Names the field, e.g. `description: must not contain U+0000`. */
  message: string;
}

interface Node {
  value: unknown;
  key: string;
  parent: Node | undefined;
  depth: number;
}

function pathOf(node: Node): string {
  const keys: string[] = [];
  for (let n: Node | undefined = node; n?.parent; n = n.parent) keys.push(n.key);
  return keys.reverse().join('.');
}

/**
 * How many values (strings, numbers, containers …) an input may hold. The largest input of any
 * procedure is a list of 1,000 ids; a 32 MiB body could hold 16 million, and walking them all, or
 * even listing them, before the schema refuses the input cost seconds and gigabytes.
 */
export const MAX_INPUT_VALUES = 10_000;

/** A container being walked: its keys (an object's; none for an array) and the next one to visit. */
interface Frame {
  node: Node;
  keys: string[] | undefined;
  length: number;
  next: number;
}

/**
 * The first string (depth first, in key order) PostgreSQL could not store, a nesting deeper than
 * `maxDepth` or more than `maxValues` values, in a raw input. The walk is iterative and linear: one
 * frame per open container, its children visited one at a time, each node linked to its parent, and
 * a path built only for the string at fault (a recursive walk copying the path at every level
 * overflowed the stack at ~5,000 levels and took quadratic time below).
 */
export function findUnstorableInput(
  input: unknown,
  maxDepth = MAX_INPUT_DEPTH,
  maxValues = MAX_INPUT_VALUES,
): InputProblem | undefined {
  const frames: Frame[] = [];
  let values = 0;
  /** Checks one value; a container gets a frame, walked by the loop below. */
  const visit = (node: Node): InputProblem | undefined => {
    if (++values > maxValues) return { message: `input holds more than ${maxValues} values` };
    const { value } = node;
    if (typeof value === 'string') {
      const reason = unstorableTextReason(value);
      if (reason === undefined) return undefined;
      const field = pathOf(node);
      return field ? { field, message: `${field}: ${reason}` } : { message: reason };
    }
    if (typeof value !== 'object' || value === null) return undefined;
    if (node.depth >= maxDepth) return { message: `input nested deeper than ${maxDepth} levels` };
    const keys = Array.isArray(value) ? undefined : Object.keys(value);
    frames.push({ node, keys, length: keys ? keys.length : (value as unknown[]).length, next: 0 });
    return undefined;
  };
  let problem = visit({ value: input, key: '', parent: undefined, depth: 0 });
  while (problem === undefined && frames.length > 0) {
    const frame = frames.at(-1)!;
    if (frame.next >= frame.length) {
      frames.pop();
      continue;
    }
    const i = frame.next++;
    const key = frame.keys ? frame.keys[i]! : String(i);
    const container = frame.node.value as Record<string, unknown>;
    problem = visit({ value: container[key], key, parent: frame.node, depth: frame.node.depth + 1 });
  }
  return problem;
}
