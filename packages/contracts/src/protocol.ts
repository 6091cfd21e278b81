import { z } from 'zod';

/** Collector protocol v1 (shared/CONTRACT.md). */

export const CollectorIdSchema = z.uuid({ message: 'expected a collector UUID' });

/** Claims of a collector JWT; `sub` is the collector UUID. */
export const CollectorTokenClaimsSchema = z.object({
  sub: CollectorIdSchema,
  type: z.literal('collector'),
  iat: z.number().int(),
  exp: z.number().int(),
  jti: z.uuid(),
  iss: z.string(),
  aud: z.union([z.string(), z.array(z.string())]),
});
export type CollectorTokenClaims = z.infer<typeof CollectorTokenClaimsSchema>;

/**
 * `Idempotency-Key`: 1–128 printable ASCII characters, space included (CONTRACT.md; HTTP already
 * strips spaces around a header value). The pattern alone: the edge tests it on every push.
 */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x20-\x7e]{1,128}$/;
export const IdempotencyKeySchema = z.string().regex(IDEMPOTENCY_KEY_PATTERN, 'expected 1-128 printable ASCII characters');

/**
 * One element of an envelope's `metrics` array (a `type` longer than 100 characters is stored as
 * its first 100). Other keys are kept as sent.
 */
export const MetricElementSchema = z.looseObject({
  type: z.string().min(1),
  timestamp: z.string().optional(),
  database: z.string().optional(),
});
export type MetricElement = z.infer<typeof MetricElementSchema>;

/**
 * The pganalytics-v3 envelope. Any other object — one whose `metrics` is not an array of such
 * elements included — is a "flat" push (one row).
 */
export const PushEnvelopeSchema = z.looseObject({
  collector_id: CollectorIdSchema.optional(),
  hostname: z.string().optional(),
  timestamp: z.string().optional(),
  version: z.string().optional(),
  metrics_count: z.number().optional(),
  push_id: z.string().min(1).max(128).optional(),
  metrics: z.array(MetricElementSchema),
});
export type PushEnvelope = z.infer<typeof PushEnvelopeSchema>;

export const PushAcceptedSchema = z.object({
  status: z.literal('accepted'),
  push_id: z.string(),
  records: z.number().int().nonnegative(),
  duplicate: z.boolean(),
});
export type PushAccepted = z.infer<typeof PushAcceptedSchema>;

/**
 * Text that is stored in PostgreSQL as it is: `text` cannot hold U+0000, and one such value in a
 * batched statement would fail the whole batch (every collector's heartbeats), so it is refused at
 * the door with a 400 that names the field.
 */
const noNul = (s: string) => !s.includes('\u0000');
const NUL_MESSAGE = 'must not contain U+0000 (PostgreSQL text cannot store it)';

/** A UTF-16 surrogate without its other half (String.prototype.isWellFormed is not in our ES2023 lib). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const LONE_SURROGATE_ALL = new RegExp(LONE_SURROGATE.source, 'g');
const SURROGATE_MESSAGE = 'must not contain an unpaired UTF-16 surrogate (U+D800 to U+DFFF)';

/**
 * Why PostgreSQL cannot store this text as it is, or undefined. `text` cannot hold U+0000. A lone
 * surrogate is not Unicode: pg's UTF-8 encoding silently turns it into U+FFFD in a text column, and
 * jsonb (the audit log's values) refuses JSON.stringify's `"\ud800"` escape outright (a 500).
 */
export function unstorableTextReason(text: string): string | undefined {
  if (text.includes('\u0000')) return 'must not contain U+0000';
  if (LONE_SURROGATE.test(text)) return SURROGATE_MESSAGE;
  return undefined;
}
const wellFormed = (s: string) => !LONE_SURROGATE.test(s);

const storableText = (max: number) =>
  z.string().max(max, `must be at most ${max} characters`).refine(noNul, NUL_MESSAGE).refine(wellFormed, SURROGATE_MESSAGE);

/**
 * Control characters (C0, DEL, C1: Unicode Cc) and the bidirectional controls (U+061C, U+200E/F,
 * U+202A–U+202E, U+2066–U+2069) in free text a collector reports and admins read (its version, its
 * last error): an ESC starts a terminal escape (clearing the screen of whoever `cat`s an export), a
 * newline forges a line of a log or a CSV, U+202E shows what follows backwards.
 */
const CONTROLS = /[\p{Cc}\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;
const CONTROLS_ALL = new RegExp(CONTROLS.source, 'gu');
const LINE_BREAKS_ALL = /\r\n|[\t\n\v\f\r\x85]/g;
/**
 * `text` as one line without controls: tabs and line breaks become a space (an error message's
 * lines stay apart), every other control character is removed (an escape sequence leaves its
 * printable rest, e.g. `[2J`). Stored this way, so nothing downstream has to remember to escape it.
 */
export const plainText = (text: string): string =>
  CONTROLS.test(text) ? text.replace(LINE_BREAKS_ALL, ' ').replace(CONTROLS_ALL, '') : text;

/** A format character (Unicode Cf: zero-width space and joiners, bidi overrides, soft hyphen, BOM …). */
const FORMAT_CHAR = /\p{Cf}/u;
const codePoint = (c: string) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/** Kept to its first `max` characters: a long error text (a stack trace) must not cost the heartbeat. */
export const HEARTBEAT_ERROR_MAX = 4000;
const truncatedText = (max: number) =>
  z
    .string()
    .refine(noNul, NUL_MESSAGE)
    // Free text (an error message): a lone surrogate is stored as U+FFFD rather than refusing the
    // whole heartbeat, and the text is not cut between the two halves of a pair.
    .transform((s) => {
      const text = plainText(s.replace(LONE_SURROGATE_ALL, '\uFFFD'));
      return text.slice(0, /[\uD800-\uDBFF]/.test(text.charAt(max - 1)) ? max - 1 : max);
    });

/**
 * A collector's name as the admin UI shows it, wherever it is given (admin forms, enrollment at the
 * edge): 1–255 characters, no control characters at all, and no format characters (Unicode Cf):
 * they are invisible or reorder the text, so `name` + U+200B, or U+202E + a reversed name, showed
 * in lists as another collector's name. The refusal names the character's code point.
 */
export const CollectorNameSchema = z
  .string()
  .trim()
  .min(1, 'is required')
  .max(255, 'must be at most 255 characters')
  .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters')
  .superRefine((s, ctx) => {
    const found = FORMAT_CHAR.exec(s);
    if (found)
      ctx.addIssue({
        code: 'custom',
        message: `must not contain invisible or formatting characters: ${codePoint(found[0])} at character ${found.index + 1}`,
      });
  })
  .refine(wellFormed, SURROGATE_MESSAGE);

/** A version string as reported (enrollment, heartbeat): at most 100 characters, stored as `plainText`. */
const versionText = () => storableText(100).transform(plainText);

/** The largest count or duration a heartbeat may report: PostgreSQL's `integer`. */
const HEARTBEAT_INT_MAX = 2_147_483_647;

export const HeartbeatBodySchema = z.object({
  timestamp: storableText(64).optional(),
  status: z.enum(['active', 'error']).optional(),
  // Stored in integer columns (collectors.last_collection_count, avg/max_collection_time_ms): a
  // larger value was answered 200 and then left out by the writer.
  metrics_count: z.number().int().nonnegative().max(HEARTBEAT_INT_MAX).optional(),
  last_error: truncatedText(HEARTBEAT_ERROR_MAX).nullable().optional(),
  collection_time_ms: z.number().nonnegative().max(HEARTBEAT_INT_MAX).optional(),
  /** `null` counts as not reported. */
  version: versionText().nullable().optional(),
});
export type HeartbeatBody = z.infer<typeof HeartbeatBodySchema>;

export const CollectorCommandActionSchema = z.enum(['stop', 'restart', 'resume']);
export type CollectorCommandAction = z.infer<typeof CollectorCommandActionSchema>;

export const HeartbeatAnswerSchema = z.object({
  status: z.literal('ok'),
  config_version: z.number().int(),
  commands: z.array(z.object({ id: z.string(), action: CollectorCommandActionSchema })),
  /**
   * Present (true) only when the request's token was signed by a JWT_SECRET key other than the one
   * that signs now: refresh the token (POST /api/v1/collectors/refresh-token) to move to the new key.
   * Additive: a collector that ignores it keeps its token until its own refresh (README "Rotating
   * JWT_SECRET").
   */
  token_refresh: z.boolean().optional(),
});
export type HeartbeatAnswer = z.infer<typeof HeartbeatAnswerSchema>;

export const TargetSchema = z.object({
  type: z.enum(['postgresql', 'mysql', 'mongodb', 'oracle']),
  host: z.string(),
  port: z.number().int(),
  database: z.string(),
  username: z.string(),
  password: z.string(),
  ssl_mode: z.string().nullable(),
  ssl_certificate: z.string().nullable().optional(),
});

export const CollectorConfigSchema = z.object({
  config_version: z.number().int(),
  enabled: z.boolean(),
  collection_interval: z.number().int(),
  query_limit: z.number().int(),
  target: TargetSchema,
});
export type CollectorConfig = z.infer<typeof CollectorConfigSchema>;

export const EnrollRequestSchema = z.object({
  name: CollectorNameSchema,
  /** The agent's host name as it reports it (free text, shown in the UI): the same rules as a name. */
  hostname: CollectorNameSchema,
  /** `null` counts as not reported (as in a heartbeat). */
  version: versionText().nullable().optional(),
});
export type EnrollRequest = z.infer<typeof EnrollRequestSchema>;

export const EnrollAnswerSchema = z.object({
  collector_id: CollectorIdSchema,
  token: z.string(),
  expires_at: z.string(),
  certificate: z.string(),
  private_key: z.string(),
});

export const RefreshTokenAnswerSchema = z.object({ token: z.string(), expires_at: z.string() });
