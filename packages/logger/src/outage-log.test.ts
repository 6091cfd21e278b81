import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createOutageLog, isConnectionError, isRefusalError } from './outage-log';

function capture() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });

describe('createOutageLog', () => {
  it('writes one line when the dependency goes away, one a minute while it stays away, one when it is back', () => {
    const { logger, lines } = capture();
    let t = 0;
    const outage = createOutageLog(logger, 'Redis', { now: () => t });
    // 6 connections retrying every 500 ms for 150 s: 1,800 errors.
    for (; t <= 150_000; t += 500) for (let c = 0; c < 6; c++) outage.error(refused(), 'push worker error');
    expect(outage.failing).toBe(true);
    outage.recovered();
    expect(lines.map((l) => l.msg)).toEqual([
      'Redis unreachable: connect ECONNREFUSED 127.0.0.1:6379; retrying (further errors summarised every 60 s)',
      'Redis still unreachable after 60 s (721 connection errors); retrying',
      'Redis still unreachable after 120 s (1441 connection errors); retrying',
      'Redis reachable again after 150.5 s',
    ]);
    expect(lines.map((l) => l.level)).toEqual([40, 40, 40, 30]);
    expect(lines[3]).toMatchObject({ errors: 1806, seconds: 150.5 });
    expect(outage.failing).toBe(false);

    // A second outage is reported again from its start; a recovery without an outage says nothing.
    outage.recovered();
    outage.error(refused(), 'push worker error');
    expect(lines).toHaveLength(5);
    expect(lines[4]!.msg).toMatch(/^Redis unreachable: /);
  });

  it('a server that refuses commands (Redis out of memory, read-only, …) is an outage too, told as such', () => {
    const { logger, lines } = capture();
    let t = 0;
    const outage = createOutageLog(logger, 'Redis', { now: () => t });
    const oom = new Error("OOM command not allowed when used memory > 'maxmemory'. script: 6c4c, on @user_script:215.");
    for (; t <= 61_000; t += 1000) outage.error(oom, 'push worker error');
    outage.recovered();
    expect(lines.map((l) => l.msg)).toEqual([
      `Redis refusing commands: ${oom.message}; retrying (further errors summarised every 60 s)`,
      'Redis still refusing commands after 60 s (61 errors); retrying',
      'Redis accepting commands again after 62.0 s',
    ]);
    for (const reply of [
      "READONLY You can't write against a read only replica.",
      'MISCONF Redis is configured to save RDB snapshots',
      'LOADING Redis is loading the dataset in memory',
    ])
      expect(isRefusalError(new Error(reply))).toBe(true);
    for (const reply of ['ERR Error running script', 'BUSYKEY Target key name already exists.', 'NOSCRIPT No matching script'])
      expect(isRefusalError(new Error(reply))).toBe(false);
  });

  it('logs every error that is not about the connection, with its own message and fields', () => {
    const { logger, lines } = capture();
    const outage = createOutageLog(logger, 'Redis');
    outage.error(new Error('ERR Error running script'), 'push worker error', { queue: 'q' });
    outage.error(new Error('ERR Error running script'), 'push worker error', { queue: 'q' });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      level: 40,
      msg: 'push worker error',
      queue: 'q',
      err: { message: 'ERR Error running script' },
    });
    expect(outage.failing).toBe(false);
  });

  it('tells connection errors from others', () => {
    expect(isConnectionError(refused())).toBe(true);
    expect(isConnectionError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isConnectionError(new Error('Connection is closed.'))).toBe(true);
    expect(isConnectionError(Object.assign(new Error('the database system is shutting down'), { code: '57P03' }))).toBe(true);
    expect(
      isConnectionError(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })),
    ).toBe(true);
    expect(isConnectionError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionError(Object.assign(new Error('deadlock detected'), { code: '40P01' }))).toBe(false);
    expect(isConnectionError(new Error('NOSCRIPT No matching script'))).toBe(false);
    expect(isConnectionError('ECONNREFUSED')).toBe(false);
    // Refusals, also inside a message of BullMQ's own (seen when Redis went over maxmemory).
    expect(isRefusalError(new Error("OOM command not allowed when used memory > 'maxmemory'."))).toBe(true);
    expect(
      isRefusalError(
        new Error("Failed to add repeatable job for next iteration: OOM command not allowed when used memory > 'maxmemory'."),
      ),
    ).toBe(true);
    expect(isRefusalError(new Error("READONLY You can't write against a read only replica."))).toBe(true);
    expect(isRefusalError(new Error('job failed: BOOM happened'))).toBe(false);
    // ioredis gives up on a command after maxRetriesPerRequest reconnects.
    expect(
      isConnectionError(
        new Error('Reached the max retries per request limit (which is 1). Refer to "maxRetriesPerRequest" option for details.'),
      ),
    ).toBe(true);
    // A TLS handshake that fails: retried like a refused connection.
    for (const code of [
      'SELF_SIGNED_CERT_IN_CHAIN',
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'CERT_HAS_EXPIRED',
      'ERR_TLS_CERT_ALTNAME_INVALID',
    ])
      expect(isConnectionError(Object.assign(new Error('tls'), { code }))).toBe(true);
  });

  it('a TLS certificate Node does not trust is one outage, and its line says how to trust the CA', () => {
    const { logger, lines } = capture();
    const outage = createOutageLog(logger, 'Redis');
    const untrusted = () =>
      Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    for (let i = 0; i < 50; i++) outage.error(untrusted(), 'redis connection error');
    expect(lines.map((l) => l.msg)).toEqual([
      "Redis unreachable: self-signed certificate in certificate chain (the server's TLS certificate is not signed by a CA this process trusts: give the CA's PEM file in NODE_EXTRA_CA_CERTS); retrying (further errors summarised every 60 s)",
    ]);
  });

  it('with a probe: tries it every probeEveryMs while the outage lasts, and the first that succeeds ends it', async () => {
    const { logger, lines } = capture();
    let up = false;
    let probes = 0;
    const outage = createOutageLog(logger, 'PostgreSQL', {
      probeEveryMs: 20,
      probe: async () => {
        probes++;
        if (!up) throw refused();
      },
    });
    await new Promise((r) => setTimeout(r, 60));
    expect(probes).toBe(0); // no outage, no probe

    outage.error(refused(), 'pool error');
    await new Promise((r) => setTimeout(r, 100));
    expect(probes).toBeGreaterThanOrEqual(2);
    expect(outage.failing).toBe(true);
    up = true;
    await new Promise((r) => setTimeout(r, 60));
    expect(outage.failing).toBe(false);
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^PostgreSQL unreachable: /),
      expect.stringMatching(/^PostgreSQL reachable again after \d+\.\d s$/),
    ]);
    const after = probes;
    await new Promise((r) => setTimeout(r, 60));
    expect(probes).toBe(after); // stopped with the outage
  });

  it('a success of work begun before the outage started does not end it (a query already running when PostgreSQL shut down)', () => {
    const { logger, lines } = capture();
    let t = 1000;
    const outage = createOutageLog(logger, 'PostgreSQL', { now: () => t });
    const begun = t - 5; // the work started before the first error
    outage.error(refused(), 'idle client error');
    t += 10;
    outage.recovered(begun);
    expect(outage.failing).toBe(true);
    t += 3000;
    outage.recovered(t - 100); // work begun during the outage: it is over
    expect(outage.failing).toBe(false);
    expect(lines.map((l) => l.msg)).toEqual([
      'PostgreSQL unreachable: connect ECONNREFUSED 127.0.0.1:6379; retrying (further errors summarised every 60 s)',
      'PostgreSQL reachable again after 3.0 s',
    ]);
  });

  it('a probe answered after its outage ended ends no later outage; close() stops probing for good', async () => {
    const { logger, lines } = capture();
    const answers: (() => void)[] = [];
    const outage = createOutageLog(logger, 'PostgreSQL', {
      probeEveryMs: 10,
      probe: () => new Promise<void>((resolve) => answers.push(resolve)),
    });
    outage.error(refused(), 'pool error');
    await new Promise((r) => setTimeout(r, 30));
    expect(answers).toHaveLength(1); // one probe at a time
    outage.recovered(); // a request's connection succeeded first
    await new Promise((r) => setTimeout(r, 15)); // (an error within probeEveryMs waits for a probe to confirm it)
    outage.error(refused(), 'pool error'); // and a new outage began
    answers[0]!();
    await new Promise((r) => setTimeout(r, 5));
    expect(outage.failing).toBe(true);

    await new Promise((r) => setTimeout(r, 30));
    const inFlight = answers.length;
    expect(inFlight).toBe(2); // the new outage's probe
    outage.close();
    answers[1]!(); // answered after close(): ends nothing
    outage.recovered();
    outage.error(refused(), 'pool error'); // an outage after close() (a quit's error): no probe
    await new Promise((r) => setTimeout(r, 40));
    expect(answers).toHaveLength(inFlight);
    expect(lines.filter((l) => /reachable again/.test(l.msg))).toHaveLength(2);
  });

  it('with a probe: an error just after an outage ended (a late answer) is an outage only if a probe fails too', async () => {
    const { logger, lines } = capture();
    let t = 0;
    let up = true;
    let probes = 0;
    const outage = createOutageLog(logger, 'Redis', {
      now: () => t,
      probeEveryMs: 60_000, // (only the probes an error starts at once, in this test)
      probe: async () => {
        probes++;
        if (!up) throw new Error("OOM command not allowed when used memory > 'maxmemory'.");
      },
    });
    const oom = () => new Error("OOM command not allowed when used memory > 'maxmemory'. script: 1, on @user_script:315.");
    const settle = () => new Promise((r) => setImmediate(r));
    outage.error(oom(), 'push worker error');
    t = 1000;
    outage.recovered(); // a command went through
    // A command sent while Redis refused, its answer read after that: a probe says Redis takes writes.
    t = 1500;
    outage.error(oom(), 'maintenance worker error');
    expect(outage.failing).toBe(false);
    await settle();
    expect(probes).toBe(1);
    expect(outage.failing).toBe(false);
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^Redis refusing commands: OOM /),
      'Redis accepting commands again after 1.0 s',
    ]);

    // Refusing again for real: the probe fails too, and the outage is told from that error on.
    up = false;
    t = 2000;
    outage.error(oom(), 'push worker error');
    await settle();
    expect(probes).toBe(2);
    expect(outage.failing).toBe(true);
    t = 5000;
    outage.recovered();
    expect(lines.map((l) => l.msg).slice(2)).toEqual([
      expect.stringMatching(/^Redis refusing commands: OOM /),
      'Redis accepting commands again after 3.0 s',
    ]);
    outage.close();
  });

  it('with a probe that does not answer: errors going on past a probe interval after the end are an outage', () => {
    const { logger, lines } = capture();
    let t = 0;
    const outage = createOutageLog(logger, 'PostgreSQL', {
      now: () => t,
      probeEveryMs: 2000,
      probe: () => new Promise(() => undefined),
    });
    outage.error(refused(), 'pool error');
    t = 1000;
    outage.recovered();
    t = 1500;
    outage.error(refused(), 'pool error'); // waits for the probe
    t = 3000;
    outage.error(refused(), 'pool error');
    expect(lines).toHaveLength(2);
    t = 3600;
    outage.error(refused(), 'pool error');
    expect(outage.failing).toBe(true);
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^PostgreSQL unreachable: /),
      'PostgreSQL reachable again after 1.0 s',
      expect.stringMatching(/^PostgreSQL unreachable: /),
    ]);
    t = 4600;
    outage.recovered();
    expect(lines.at(-1)?.msg).toBe('PostgreSQL reachable again after 3.1 s'); // from the first error of the three
    outage.close();
  });

  it('a reconnect ends an outage of connection errors, not one of refusals (only a probe or a command that works does)', () => {
    const { logger, lines } = capture();
    const outage = createOutageLog(logger, 'Redis');
    outage.error(new Error("OOM command not allowed when used memory > 'maxmemory'."), 'push worker error');
    outage.connected();
    expect(outage.failing).toBe(true);
    outage.recovered();
    expect(outage.failing).toBe(false);
    outage.error(refused(), 'push worker error');
    outage.connected();
    expect(outage.failing).toBe(false);
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^Redis refusing commands: OOM /),
      expect.stringMatching(/^Redis accepting commands again after /),
      expect.stringMatching(/^Redis unreachable: /),
      expect.stringMatching(/^Redis reachable again after /),
    ]);
  });
});
