import type { IncomingMessage } from 'node:http';
import { AppError } from '@pga/contracts';
import { ownOrigin } from './request-meta';

/**
 * CSRF defence for /trpc (issue 3 §1): a state-changing call must be a POST with a JSON body and an
 * `Origin` equal to this site's (or one of ALLOWED_ORIGINS). A cross-site HTML form can send
 * neither a JSON content type nor a forged Origin, and tRPC would otherwise also accept
 * form-data / octet-stream bodies. Queries and subscriptions are GETs and change nothing; tRPC
 * itself refuses a mutation over GET. Non-browser clients (scripts) send `Origin: <admin URL>`.
 * Returns the refusal, or undefined when the request may proceed.
 */
export function csrfRefusal(
  req: IncomingMessage,
  { trustProxy, hops = 1, allowedOrigins }: { trustProxy: boolean; hops?: number; allowedOrigins: string[] },
): AppError | undefined {
  if (req.method === 'GET' || req.method === 'HEAD') return undefined;
  if (req.method !== 'POST') return new AppError('METHOD_NOT_ALLOWED', 'use GET for queries and POST for mutations');
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
  if (type !== 'application/json') return new AppError('UNSUPPORTED_MEDIA_TYPE', 'send the request body as application/json');
  const origin = req.headers.origin;
  if (!origin) return new AppError('FORBIDDEN', 'an Origin header is required on POST requests');
  if (origin !== ownOrigin(req, trustProxy, hops) && !allowedOrigins.includes(origin))
    return new AppError('FORBIDDEN', 'cross-origin request refused');
  return undefined;
}
