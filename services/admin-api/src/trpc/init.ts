import { initTRPC, TRPCError } from '@trpc/server';
import { AppError, type ErrorCode } from '@pga/contracts';
import type { Context } from './context';
import { APP_CODE, TRPC_CODE } from './error-codes';
import { findUnstorableInput } from '../db/unstorable-input';
import { databaseUnavailable, logDatabaseUnavailable } from '../db/unavailable';

interface Issue {
  path?: readonly PropertyKey[];
  message: string;
}

function validationIssues(cause: unknown): Issue[] | undefined {
  if (typeof cause === 'object' && cause !== null && 'issues' in cause && Array.isArray(cause.issues))
    return cause.issues as Issue[];
  return undefined;
}

const fieldOf = (issue: Issue | undefined) => (issue?.path?.length ? issue.path.map(String).join('.') : undefined);

const t = initTRPC.context<Context>().create({
  // Never a stack trace, SQL text or driver message in an answer (CONTRACT.md); details go to the log.
  isDev: false,
  sse: { ping: { enabled: true, intervalMs: 15_000 }, client: { reconnectAfterInactivityMs: 30_000 } },
  errorFormatter({ shape, error }) {
    const cause = error.cause;
    let appCode: ErrorCode = APP_CODE[error.code] ?? 'INTERNAL';
    let message = error.message;
    let field: string | undefined;
    let retryAfterSeconds: number | undefined;
    if (cause instanceof AppError) {
      appCode = cause.code;
      field = cause.details.field;
      retryAfterSeconds = cause.details.retryAfterSeconds;
    } else if (error.code === 'BAD_REQUEST' && validationIssues(cause)) {
      const first = validationIssues(cause)![0];
      field = fieldOf(first);
      message = field ? `${field}: ${first!.message}` : (first?.message ?? 'invalid input');
    } else if (error.code === 'INTERNAL_SERVER_ERROR') {
      message = 'internal error; the administrator can find the details in the service log';
    }
    return {
      message,
      code: shape.code,
      data: {
        code: shape.data.code,
        httpStatus: shape.data.httpStatus,
        path: shape.data.path,
        appCode,
        ...(field ? { field } : {}),
        ...(retryAfterSeconds ? { retryAfterSeconds } : {}),
      },
    };
  },
});

/** An AppError as tRPC answers it (its code mapped, its message kept). */
export const toTRPCError = (cause: AppError): TRPCError =>
  new TRPCError({ code: TRPC_CODE[cause.code], message: cause.message, cause });

/** Domain code throws AppError; only here (and in a stream, after it started) does it become a TRPCError (STYLE.md). */
const appErrors = t.middleware(async ({ ctx, path, type, next }) => {
  const result = await next();
  if (result.ok) return result;
  if (result.error.cause instanceof AppError) throw toTRPCError(result.error.cause);
  // PostgreSQL unreachable, restarting, out of disk …: 503 with Retry-After, not a 500 "internal error"
  // (a mutation's answer says the change may have been saved: it may have committed before the loss).
  const unavailable = databaseUnavailable(result.error.cause, { mutation: type === 'mutation' });
  if (unavailable) {
    logDatabaseUnavailable(ctx.deps.logger, result.error.cause, path);
    throw toTRPCError(unavailable);
  }
  return result;
});

/**
 * PostgreSQL cannot store U+0000 or a lone UTF-16 surrogate (unstorableTextReason): a name,
 * description, search or any other text carrying one would otherwise reach the database and come
 * back as a 500 (or be stored altered). Refused up front, for every procedure, naming the field (no
 * credential or secret can legitimately contain either). The raw input is
 * walked before any schema, so an input nested deeper than any schema (MAX_INPUT_DEPTH) is refused
 * here too.
 */
const storableInput = t.middleware(async ({ getRawInput, next }) => {
  const problem = findUnstorableInput(await getRawInput());
  if (problem) throw new AppError('VALIDATION_FAILED', problem.message, problem.field ? { field: problem.field } : {});
  return next();
});

/**
 * Over HTTP a procedure holds its request's place in ADMIN_SESSION_MAX_IN_FLIGHT until it settles,
 * and does not start for a request whose client went away (while its session was looked up, say):
 * until 2026-12-08 it ran uncounted once the client had closed (review34 F2). A subscription's
 * resolver returns its stream at once: a live feed is held only while it starts.
 */
const inProgress = t.middleware(({ ctx, next }) => (ctx.inProgress ? ctx.inProgress(() => next()) : next()));

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;
export const publicProcedure = t.procedure.use(appErrors).use(inProgress).use(storableInput);

/** Any signed-in user (admin or viewer): reads. */
export const authedProcedure = publicProcedure.use(({ ctx, next }) => {
  if (!ctx.user) throw new AppError('UNAUTHORIZED', 'sign in first');
  return next({ ctx: { ...ctx, user: ctx.user } });
});

/** Admins only: every mutation and connection tests. */
export const adminProcedure = authedProcedure.use(({ ctx, next }) => {
  if (ctx.user.role !== 'admin') throw new AppError('FORBIDDEN', 'this needs the admin role; your account is read-only');
  return next({ ctx });
});
