import { isUtf8 } from 'node:buffer';
import type { z } from 'zod';
import { AppError } from '@pga/contracts';
import { decodeBody } from '../push/decode-body';

/** A small JSON body (heartbeat, enrollment): empty means `{}`; validated with `schema`. */
export async function readJson<S extends z.ZodType>(
  raw: Buffer,
  encoding: string,
  maxBytes: number,
  schema: S,
): Promise<z.infer<S>> {
  const decoded = await decodeBody(raw, encoding, maxBytes);
  let value: unknown = {};
  if (decoded.length > 0) {
    if (!isUtf8(decoded)) throw new AppError('INVALID_JSON', 'body is not UTF-8');
    try {
      value = JSON.parse(decoded.toString('utf8'));
    } catch {
      throw new AppError('INVALID_JSON', 'body is not valid JSON');
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new AppError('INVALID_PAYLOAD', 'body must be a JSON object');
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AppError('VALIDATION_FAILED', `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}
