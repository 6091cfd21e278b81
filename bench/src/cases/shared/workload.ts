import { makeBodyPool, type PushBody } from '../../load/payloads';

/** Every scenario pushing "2 KB pushes" uses this same seeded pool, so they store the same rows. */
const SEED_2K = 20_261_127;
const SEED_64K = 64_064;
let pool2k: PushBody[] | undefined;
let pool64k: PushBody[] | undefined;

export function bodyPool2k(): PushBody[] {
  pool2k ??= makeBodyPool(SEED_2K, '2k', 64);
  return pool2k;
}

export function bodyPool64k(): PushBody[] {
  pool64k ??= makeBodyPool(SEED_64K, '64k', 8);
  return pool64k;
}

/** One request in four is sent gzip-compressed (Content-Encoding: gzip). */
export const GZIP_EVERY = 4;
