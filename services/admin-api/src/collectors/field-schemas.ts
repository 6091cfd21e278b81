import { isIP } from 'node:net';
import { z } from 'zod';
import { CollectorNameSchema, CollectorTypeSchema, EnvironmentSchema, SSL_MODES } from '@pga/contracts';

/**
 * The design's registration form rules ("API Implementation Details"), as zod. Each schema's
 * message names what is expected; tRPC's error answer names the field.
 */

const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** The same rule as enrollment at the edge (@pga/contracts). */
export const NameSchema = CollectorNameSchema;

/** A host name (RFC 1123), IPv4 or IPv6 address, without a port (the port is its own field). */
export const HostSchema = z
  .string()
  .trim()
  .min(1, 'is required')
  .max(255, 'must be at most 255 characters')
  .refine(
    (h) => isIP(h.replace(/^\[|\]$/g, '')) !== 0 || HOSTNAME.test(h),
    'expected a host name or an IP address (without a port)',
  )
  .transform((h) => h.replace(/^\[|\]$/g, ''));

export const PortSchema = z.coerce
  .number()
  .int('expected a whole number')
  .min(1, 'expected a port 1-65535')
  .max(65535, 'expected a port 1-65535');

/** libpq names, plus the design document's `requireCA` / `requireFull` spellings. */
export const SslModeInputSchema = z
  .enum([...SSL_MODES, 'requireCA', 'requireFull'], { message: `expected one of ${SSL_MODES.join(', ')}` })
  .transform((m) => (m === 'requireCA' ? 'verify-ca' : m === 'requireFull' ? 'verify-full' : m));

const PEM_BEGIN = /-----BEGIN [A-Z0-9 ]+-----/;
const PEM_END = /-----END [A-Z0-9 ]+-----/g;

/**
 * Whether the text holds a PEM block: a BEGIN line, at least one character, then an END line. Two
 * searches, each linear: the one regex this replaces (BEGIN line, `[\s\S]+`, END line) scanned the
 * rest of the text for an END after every BEGIN it tried, quadratic in the number of BEGIN lines
 * (64 KiB of them took 0.3 s; ten such rows in a bulk import blocked the service ~3 s). The first
 * BEGIN line found is the one that ends first (its label stops at the first `-`), so an END after
 * it exists exactly when one exists after any.
 */
export function containsPem(text: string): boolean {
  const begin = PEM_BEGIN.exec(text);
  if (!begin) return false;
  PEM_END.lastIndex = begin.index + begin[0].length + 1;
  return PEM_END.test(text);
}

/** A PEM certificate (CA of the target), as text or base64 of the text (the design sends base64). */
export const SslCertificateSchema = z
  .string()
  .trim()
  .max(65536, 'must be at most 64 KiB')
  .transform((value, ctx) => {
    if (containsPem(value)) return value;
    const decoded = /^[A-Za-z0-9+/=\s]+$/.test(value) ? Buffer.from(value, 'base64').toString('utf8') : '';
    if (containsPem(decoded)) return decoded.trim();
    ctx.addIssue({ code: 'custom', message: 'expected a PEM certificate (-----BEGIN CERTIFICATE-----), as text or base64' });
    return z.NEVER;
  });

export const TagSchema = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(/^[A-Za-z0-9_.:/=-]+$/, 'may contain letters, digits and _ . : / = - only');

export const TagsSchema = z
  .array(TagSchema)
  .max(32, 'at most 32 tags')
  .transform((tags) => [...new Set(tags)]);

export const CollectionIntervalSchema = z.coerce
  .number()
  .int('expected whole seconds')
  .min(10, 'must be at least 10 seconds')
  .max(3600, 'must be at most 3600 seconds');
export const QueryLimitSchema = z.coerce
  .number()
  .int('expected a whole number')
  .min(1, 'must be at least 1')
  .max(10000, 'must be at most 10000');

export const DEFAULT_PORTS = { postgresql: 5432, mysql: 3306, mongodb: 27017, oracle: 1521 } as const;

/** Target connection fields shared by register, update and testConnection. */
export const TargetFields = {
  type: CollectorTypeSchema,
  host: HostSchema,
  port: PortSchema.optional(),
  database: z.string().trim().min(1, 'is required').max(255, 'must be at most 255 characters'),
  username: z.string().trim().min(1, 'is required').max(255, 'must be at most 255 characters'),
  password: z.string().min(1, 'is required').max(512, 'must be at most 512 characters'),
  ssl_mode: SslModeInputSchema.optional(),
  ssl_certificate: SslCertificateSchema.optional(),
};

export const RegisterCollectorInputSchema = z.object({
  name: NameSchema,
  ...TargetFields,
  environment: EnvironmentSchema,
  /** Group by name (as in the design's form and CSV files) … */
  group: z.string().trim().max(255).optional(),
  /** … or by id. */
  group_id: z.uuid().optional(),
  description: z.string().max(1000, 'must be at most 1000 characters').optional(),
  collection_interval: CollectionIntervalSchema.default(60),
  query_limit: QueryLimitSchema.default(100),
  tags: TagsSchema.default([]),
});
export type RegisterCollectorInput = z.infer<typeof RegisterCollectorInputSchema>;
export type RegisterCollectorInputRaw = z.input<typeof RegisterCollectorInputSchema>;
