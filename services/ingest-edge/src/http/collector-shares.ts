/**
 * Each collector's share of an edge process's in-flight budget (MAX_INFLIGHT_BYTES_PER_COLLECTOR):
 * the push bytes of its requests in flight — declared when they arrive, plus what gzip inflated. A
 * push that would take its collector past the share is refused (429, Retry-After) unless it is the
 * collector's only one in flight, so one push of any size up to MAX_BODY_BYTES always gets through.
 * Without it, one collector uploading several large pushes at once (or slowly) held the whole
 * budget, and every other collector on that process got 503.
 */
export class CollectorShares {
  private readonly used = new Map<string, number>();

  constructor(readonly share: number) {}

  /** Counts `bytes` for `collectorId`; false (nothing counted) when that would pass its share. */
  take(collectorId: string, bytes: number): boolean {
    const used = this.used.get(collectorId) ?? 0;
    if (used > 0 && used + bytes > this.share) return false;
    this.used.set(collectorId, used + bytes);
    return true;
  }

  /** Counts bytes that are in memory already (an inflated body): never refused. */
  add(collectorId: string, bytes: number): void {
    this.used.set(collectorId, (this.used.get(collectorId) ?? 0) + bytes);
  }

  give(collectorId: string, bytes: number): void {
    const used = (this.used.get(collectorId) ?? 0) - bytes;
    if (used > 0) this.used.set(collectorId, used);
    else this.used.delete(collectorId);
  }

  /** Bytes counted for `collectorId` now. */
  usedBy(collectorId: string): number {
    return this.used.get(collectorId) ?? 0;
  }

  /** Collectors with bytes in flight. */
  get size(): number {
    return this.used.size;
  }
}
