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
 * The first string (depth first, in key order) PostgreSQL could not store, or a nesting deeper
 * than `maxDepth`, in a raw input. The walk is iterative and linear in the input's size: each node
 * links to its parent, and a path is only built for the string at fault (a recursive walk copying
 * the path at every level overflowed the stack at ~5,000 levels and took quadratic time below).
 */
export function findUnstorableInput(input: unknown, maxDepth = MAX_INPUT_DEPTH): InputProblem | undefined {
  const stack: Node[] = [{ value: input, key: '', parent: undefined, depth: 0 }];
  for (let node = stack.pop(); node; node = stack.pop()) {
    const { value } = node;
    if (typeof value === 'string') {
      const reason = unstorableTextReason(value);
      if (reason === undefined) continue;
      const field = pathOf(node);
      return field ? { field, message: `${field}: ${reason}` } : { message: reason };
    }
    if (typeof value !== 'object' || value === null) continue;
    if (node.depth >= maxDepth) return { message: `input nested deeper than ${maxDepth} levels` };
    const entries = Object.entries(value);
    for (let i = entries.length - 1; i >= 0; i--)
      stack.push({ value: entries[i]![1], key: entries[i]![0], parent: node, depth: node.depth + 1 });
  }
  return undefined;
}
