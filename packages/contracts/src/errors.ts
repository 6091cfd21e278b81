/**
 * The closed set of error codes every process answers with (STYLE.md). HTTP status and tRPC code are
 * mapped in exactly one table each: here for HTTP, in the admin service for tRPC.
 */
export const ERROR_HTTP_STATUS = {
  INVALID_JSON: 400,
  INVALID_PAYLOAD: 400,
  VALIDATION_FAILED: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  COLLECTOR_MISMATCH: 403,
  COLLECTOR_DISABLED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  /** The request's body did not arrive in time (the admin service's ADMIN_BODY_TIMEOUT_MS). */
  REQUEST_TIMEOUT: 408,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_HTTP_STATUS;

/** Wire shape of every error answer: `{"error": {"code", "message"}}`. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; field?: string };
}

/** Domain error: thrown by domain code, translated to HTTP / tRPC at the edge of each service. */
export class AppError extends Error {
  override readonly name = 'AppError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /**
     * `allow`: the methods a 405 names in its Allow header (HTTP answers only). `reason`: what a
     * service's rejection metrics count the refusal as when not its code (the edge's push quota is
     * answered RATE_LIMITED and counted as PUSH_QUOTA); never on the wire.
     */
    readonly details: { field?: string; retryAfterSeconds?: number; allow?: string; reason?: string } = {},
  ) {
    super(message);
  }

  get httpStatus(): number {
    return ERROR_HTTP_STATUS[this.code];
  }

  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message, ...(this.details.field ? { field: this.details.field } : {}) } };
  }
}
