/**
 * Each collector's share of an edge process's in-flight budget (MAX_INFLIGHT_BYTES_PER_COLLECTOR):
 * the push bytes of its requests in flight — a body's declared length when it arrives (one of unknown
 * length, chunked, counts as `maxBodyBytes` until it is read), then what gzip inflates, as it comes
 * out. A push that would take its collector past the share is refused (429, Retry-After) unless it is
 * the collector's only push in flight, so one push of any size up to MAX_BODY_BYTES always gets
 * through. Without it, one collector uploading several large pushes at once (or slowly) held the
 * whole budget, and every other collector on that process got 503.
 */
export class CollectorShares {
  private readonly used = new Map<string, { bytes: number; requests: number }>();

  constructor(
    readonly share: number,
    private readonly maxBodyBytes: number,
  ) {}

  /**
   * A push of `declared` bytes (undefined: unknown length) arrives for `collectorId`: counted and
   * admitted, or refused (false, nothing counted). Admitted, it is released with `release`. Returns
   * the bytes counted for it.
   */
  admit(collectorId: string, declared: number | undefined): number | false {
    const bytes = declared ?? this.maxBodyBytes;
    const entry = this.used.get(collectorId);
    if (entry && entry.bytes + bytes > this.share) return false;
    if (entry) {
      entry.bytes += bytes;
      entry.requests++;
    } else this.used.set(collectorId, { bytes, requests: 1 });
    return bytes;
  }

  /**
   * `bytes` more for an admitted push: refused (false, nothing counted) when that takes the
   * collector past its share, unless the collector has no other push in flight.
   */
  take(collectorId: string, bytes: number): boolean {
    const entry = this.used.get(collectorId);
    if (!entry) return false; // not admitted: never happens
    if (entry.requests > 1 && entry.bytes + bytes > this.share) return false;
    entry.bytes += bytes;
    return true;
  }

  /** Corrects an admitted push's count: +/- `bytes` (a chunked body's real size once read, inflated bytes freed). */
  adjust(collectorId: string, bytes: number): void {
    const entry = this.used.get(collectorId);
    if (entry) entry.bytes += bytes;
  }

  /** An admitted push is done: `bytes` is what it still counts. */
  release(collectorId: string, bytes: number): void {
    const entry = this.used.get(collectorId);
    if (!entry) return;
    entry.bytes -= bytes;
    if (--entry.requests === 0) this.used.delete(collectorId);
  }

  /** Bytes counted for `collectorId` now. */
  usedBy(collectorId: string): number {
    return this.used.get(collectorId)?.bytes ?? 0;
  }
}
