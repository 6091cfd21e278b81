import { connect, type Socket } from 'node:net';

/** What came back for one request. */
export interface HttpAnswer {
  status: number;
  body: Buffer;
}

type Callback = (err: Error | undefined, answer?: HttpAnswer) => void;

const HEADER_END = Buffer.from('\r\n\r\n');

/**
 * A minimal HTTP/1.1 keep-alive client connection: one request in flight, responses framed by
 * Content-Length (or chunked). node:http's client costs several times more CPU per request, and on
 * a 2-core machine every cycle the generator spends is taken from the system under test.
 */
export class HttpConnection {
  private socket: Socket | undefined;
  private connecting: Promise<void> | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private pending: Callback | undefined;
  busy = false;
  closed = false;

  constructor(
    readonly host: string,
    readonly port: number,
  ) {}

  open(): Promise<void> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve();
    this.connecting ??= new Promise<void>((resolve, reject) => {
      const socket = connect({ host: this.host, port: this.port, noDelay: true });
      const onError = (err: Error) => {
        this.connecting = undefined;
        reject(err);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        socket.setNoDelay(true);
        this.socket = socket;
        this.connecting = undefined;
        socket.on('data', (chunk) => this.onData(chunk));
        socket.on('error', (err) => this.fail(err));
        socket.on('close', () => this.fail(Object.assign(new Error('connection closed'), { code: 'ECONNCLOSED' })));
        resolve();
      });
    });
    return this.connecting;
  }

  /** Sends `head` (request line + headers + blank line) and `body`; calls back with the answer. */
  request(head: string, body: Buffer | undefined, cb: Callback): void {
    this.busy = true;
    this.pending = cb;
    this.buf = Buffer.alloc(0);
    const write = () => {
      const socket = this.socket!;
      socket.cork();
      socket.write(head, 'latin1');
      if (body && body.length) socket.write(body);
      socket.uncork();
    };
    if (this.socket && !this.socket.destroyed) write();
    else
      this.open().then(write, (err: Error) => {
        this.fail(err);
      });
  }

  /** The socket is established and not closed by either side. */
  get connected(): boolean {
    return Boolean(this.socket && !this.socket.destroyed);
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
  }

  private fail(err: Error): void {
    this.socket?.destroy();
    this.socket = undefined;
    const cb = this.pending;
    this.pending = undefined;
    this.busy = false;
    cb?.(err);
  }

  private finish(answer: HttpAnswer, keepAlive: boolean): void {
    const cb = this.pending;
    this.pending = undefined;
    this.busy = false;
    this.buf = Buffer.alloc(0);
    if (!keepAlive) {
      this.socket?.destroy();
      this.socket = undefined;
    }
    cb?.(undefined, answer);
  }

  private onData(chunk: Buffer): void {
    if (!this.pending) return; // e.g. a 100-continue or an unsolicited close notice
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const end = this.buf.indexOf(HEADER_END);
    if (end < 0) return;
    const head = this.buf.toString('latin1', 0, end);
    const status = Number(head.slice(9, 12));
    const lower = head.toLowerCase();
    const keepAlive = !/\r\nconnection:\s*close/.test(lower);
    const bodyStart = end + 4;
    const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower);
    if (cl) {
      const len = Number(cl[1]);
      if (this.buf.length - bodyStart < len) return;
      this.finish({ status, body: this.buf.subarray(bodyStart, bodyStart + len) }, keepAlive);
      return;
    }
    if (/\r\ntransfer-encoding:\s*chunked/.test(lower)) {
      const decoded = decodeChunked(this.buf.subarray(bodyStart));
      if (decoded) this.finish({ status, body: decoded }, keepAlive);
      return;
    }
    // No framing: the body ends when the server closes (HTTP/1.0 style); rare for our servers.
    this.finish({ status, body: this.buf.subarray(bodyStart) }, false);
  }
}

/** Decodes a complete chunked body; undefined while incomplete. */
export function decodeChunked(data: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', pos);
    if (lineEnd < 0) return undefined;
    const size = parseInt(data.toString('latin1', pos, lineEnd), 16);
    if (!Number.isFinite(size)) return Buffer.concat(parts);
    if (size === 0) return data.length >= lineEnd + 4 ? Buffer.concat(parts) : undefined;
    if (data.length < lineEnd + 2 + size + 2) return undefined;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    pos = lineEnd + 2 + size + 2;
  }
}
