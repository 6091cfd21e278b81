import { Job, Queue, type JobJson } from 'bullmq';

/** Job data that is already its JSON text, as bytes: stored by BullMQ byte for byte. */
export class EncodedData {
  constructor(readonly json: Buffer) {}
}

/**
 * A job whose data may be `EncodedData`. BullMQ serialises `data` with `JSON.stringify` and hands
 * the resulting string to ioredis as one argument of its add script; for a packed job that is a
 * 50–200 KB string — and ioredis copies it into a second string for the wire — both alive on the JS
 * heap until Redis answers. Every young-generation collection in that window copies them, and most
 * are then promoted: in the edge at a few thousand pushes/s that was 4–6 MB copied per scavenge
 * (5–25 ms pauses, the edge's latency tail). As a Buffer the same bytes live outside the JS heap,
 * and ioredis writes Buffer arguments as they are. What Redis stores is identical, so workers read
 * these jobs like any other.
 */
class EncodedJob extends Job {
  override asJSON(): JobJson {
    const data: unknown = this.data;
    if (!(data instanceof EncodedData)) return super.asJSON();
    this.data = undefined;
    try {
      return { ...super.asJSON(), data: data.json as unknown as string };
    } finally {
      this.data = data;
    }
  }
}

/** A BullMQ queue whose `add` also takes `EncodedData`. */
export class EncodedQueue extends Queue {
  protected override get Job(): typeof Job {
    return EncodedJob as typeof Job;
  }
}
