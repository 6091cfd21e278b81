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
const FORMAT_CHARS_ALL = /\p{Cf}/gu;
/**
 * A whole emoji as Unicode recommends it (RGI: family U+1F468 U+200D U+1F469 …, a flag's tag
 * sequence U+1F3F4 U+E0067 … U+E007F): the format characters inside it draw one picture, hiding
 * nothing. Built at run time: the `v` flag is ES2024, above the TS target (Node 20 has it).
 */
const RGI_EMOJI_ALL = new RegExp('\\p{RGI_Emoji}', 'gv');
/**
 * The viramas (Canonical_Combining_Class 9, UnicodeData.txt of Unicode 16: Devanagari U+094D,
 * Bengali U+09CD, Tamil U+0BCD, Myanmar asat U+103A, Khmer coeng U+17D2 …).
 */
const VIRAMAS =
  '\\u094D\\u09CD\\u0A4D\\u0ACD\\u0B4D\\u0BCD\\u0C4D\\u0CCD\\u0D3B\\u0D3C\\u0D4D\\u0DCA\\u0E3A\\u0EBA\\u0F84\\u1039\\u103A' +
  '\\u1714\\u1715\\u1734\\u17D2\\u1A60\\u1B44\\u1BAA\\u1BAB\\u1BF2\\u1BF3\\u2D7F\\uA806\\uA82C\\uA8C4\\uA953\\uA9C0' +
  '\\uAAF6\\uABED\\u{10A3F}\\u{11046}\\u{11070}\\u{1107F}\\u{110B9}\\u{11133}\\u{11134}\\u{111C0}\\u{11235}\\u{112EA}' +
  '\\u{1134D}\\u{113CE}\\u{113CF}\\u{113D0}\\u{11442}\\u{114C2}\\u{115BF}\\u{1163F}\\u{116B6}\\u{1172B}\\u{11839}' +
  '\\u{1193D}\\u{1193E}\\u{119E0}\\u{11A34}\\u{11A47}\\u{11A99}\\u{11C3F}\\u{11D44}\\u{11D45}\\u{11D97}\\u{11F41}' +
  '\\u{11F42}\\u{1612F}';
/** A letter of a cursively joined script (Joining_Type D, L or R in ArabicShaping.txt). */
const JOINING_LETTER = `(?=\\p{L})[${[
  'Arabic',
  'Syriac',
  'Nko',
  'Mongolian',
  'Phags_Pa',
  'Mandaic',
  'Manichaean',
  'Psalter_Pahlavi',
  'Hanifi_Rohingya',
  'Sogdian',
  'Adlam',
  'Chorasmian',
  'Old_Uyghur',
]
  .map((script) => `\\p{Script=${script}}`)
  .join('')}]`;
/**
 * U+200C (ZWNJ) and U+200D (ZWJ) where they spell a word rather than hide in it, after IDNA's
 * CONTEXTJ rules (RFC 5892 A.1, A.2; UAX #31 A1, A2, B), and only between two letters: either
 * after a letter whose marks end in a virama (Hindi क् + U+200D + ष, a half form), or a ZWNJ
 * between two letters of a cursive script (Persian می + U+200C + خواهم, a letter left unjoined).
 * Between Latin letters, at either end or next to a space or a hyphen they change nothing visible,
 * so `pr` + U+200C + `od` would show as `prod`: those are refused as before.
 */
const JOINER_IN_WORD_ALL = new RegExp(
  `(?<=\\p{L}\\p{M}*[${VIRAMAS}])[\\u200C\\u200D](?=\\p{L})|(?<=${JOINING_LETTER}\\p{M}*)\\u200C(?=${JOINING_LETTER})`,
  'gu',
);
const codePoint = (c: string) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
/**
 * The first format character of `name` that is not part of a whole emoji nor a joiner inside a
 * word (`JOINER_IN_WORD_ALL`), with its position in code points (1-based): what a user counts as
 * characters, not UTF-16 units (`𝔞` + U+200B is U+200B at character 2, not 3).
 */
export const hiddenFormatChar = (name: string): { codePoint: string; position: number } | undefined => {
  if (!/\p{Cf}/u.test(name)) return undefined;
  const allowed = new Set<number>();
  for (const emoji of name.matchAll(RGI_EMOJI_ALL))
    for (let i = emoji.index; i < emoji.index + emoji[0].length; i++) allowed.add(i);
  for (const joiner of name.matchAll(JOINER_IN_WORD_ALL)) allowed.add(joiner.index);
  for (const found of name.matchAll(FORMAT_CHARS_ALL))
    if (!allowed.has(found.index))
      return { codePoint: codePoint(found[0]), position: [...name.slice(0, found.index)].length + 1 };
  return undefined;
};

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
 * in lists as another collector's name. Except where they are part of the text (`hiddenFormatChar`):
 * inside a whole emoji (a family, a flag of a subdivision) and ZWNJ/ZWJ inside a Persian or Indic word. The refusal names the
 * character's code point and its position in code points.
 */
export const CollectorNameSchema = z
  .string()
  .trim()
  .min(1, 'is required')
  .max(255, 'must be at most 255 characters')
  .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters')
  .superRefine((s, ctx) => {
    const found = hiddenFormatChar(s);
    if (found)
      ctx.addIssue({
        code: 'custom',
        message: `must not contain invisible or formatting characters: ${found.codePoint} at character ${found.position}`,
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
