// A write-only RESP pipeline for bulk restores: the redis driver encodes many
// RESTORE commands into 1 MiB buffers, each handed to the socket in one write,
// with no promise per command and one copy of each payload (a general client's
// promise, queue entry and encoding per key cost more than the server spends
// on the RESTORE itself).
//
// Algorithm: AUTH and SELECT first (each awaited, errors named); then send()
// copies commands into a 1 MiB buffer handed to the socket when full (large
// arguments are written as they are), and waits after each FLUSH_BYTES.
// Replies are counted as they come: every reply of the commands sent here is a
// one-line simple string or error (+OK / -ERR ...), so a line is a reply. The
// first error is kept with the command's label (the key) and thrown by the next
// send() or by finish(). The writer waits when the socket pushes back or when
// more than MAX_OUTSTANDING replies are due, so memory stays bounded.
import net from 'node:net';
import tls from 'node:tls';

const FLUSH_BYTES = 1 << 20;
const MAX_OUTSTANDING = 16_384;

export class RespCommandError extends Error {
  override name = 'RespCommandError';
  constructor(message: string, readonly reply: string) {
    super(message);
  }
}

export class RespPipe {
  private outstanding = 0;
  /** Labels of the commands whose reply is due, oldest first (from `head`). */
  private labels: (Buffer | string)[] = [];
  private head = 0;
  private partial = '';
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private awaiting: ((line: string) => void)[] = [];

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (err) => this.fail(err));
    sock.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  /** Connects, authenticates and selects `database`. */
  static async open(url: string, auth: { username?: string; password?: string }, database: number): Promise<RespPipe> {
    const u = new URL(url);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const port = Number(u.port || 6379);
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = u.protocol === 'rediss:' ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port });
      s.setNoDelay(true);
      const timer = setTimeout(() => { s.destroy(); reject(new Error(`connect timeout to ${host}:${port}`)); }, 10_000);
      s.once(u.protocol === 'rediss:' ? 'secureConnect' : 'connect', () => { clearTimeout(timer); s.removeListener('error', reject); resolve(s); });
      s.once('error', (err) => { clearTimeout(timer); reject(err); });
    });
    const pipe = new RespPipe(sock);
    const username = auth.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
    const password = auth.password ?? (u.password ? decodeURIComponent(u.password) : undefined);
    try {
      if (password !== undefined) await pipe.call(username ? ['AUTH', username, password] : ['AUTH', password]);
      if (database !== 0) await pipe.call(['SELECT', String(database)]);
    } catch (err) {
      sock.destroy();
      throw err;
    }
    return pipe;
  }

  /** One command, its reply awaited (before any send()). */
  private async call(args: string[]): Promise<string> {
    const line = await new Promise<string>((resolve, reject) => {
      if (this.failure) { reject(this.failure); return; }
      this.awaiting.push(resolve);
      this.outstanding++;
      this.sock.write(this.encode(args.map((a) => Buffer.from(a))));
      this.wake = () => { if (this.failure) reject(this.failure); };
    });
    if (line.startsWith('-')) throw new RespCommandError(`${args[0]}: ${line.slice(1)}`, line.slice(1));
    return line.slice(1);
  }

  private encode(args: Buffer[]): Buffer {
    const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
    for (const a of args) parts.push(Buffer.from(`$${a.length}\r\n`), a, CRLF);
    return Buffer.concat(parts);
  }

  /**
   * Queues a command; `label` names it in an error (e.g. the key). Arguments
   * are copied into the current 1 MiB buffer (the only copy), or, when large,
   * written as they are.
   */
  async send(args: (Buffer | string)[], label: Buffer | string): Promise<void> {
    if (this.failure) throw this.failure;
    this.ascii(`*${args.length}\r\n`);
    for (const a of args) {
      if (typeof a === 'string') { this.ascii(`$${Buffer.byteLength(a)}\r\n`); this.bytes(Buffer.from(a)); }
      else { this.ascii(`$${a.length}\r\n`); this.bytes(a); }
      this.ascii('\r\n');
    }
    this.labels.push(label);
    this.outstanding++;
    if (this.written >= FLUSH_BYTES) await this.flush();
  }

  private buf = Buffer.allocUnsafe(FLUSH_BYTES);
  private pos = 0;
  /** Bytes handed to the socket since the last flush(). */
  private written = 0;

  private ascii(s: string): void {
    if (this.pos + s.length > this.buf.length) this.writeBuf();
    this.pos += this.buf.write(s, this.pos, 'latin1');
  }

  private bytes(b: Buffer): void {
    if (b.length >= 64 * 1024) {
      this.writeBuf();
      this.sock.write(b);
      this.written += b.length;
      return;
    }
    if (this.pos + b.length > this.buf.length) this.writeBuf();
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }

  /** Hands the filled part of the buffer to the socket and starts a new one (the socket keeps the old one until sent). */
  private writeBuf(): void {
    if (this.pos === 0) return;
    this.sock.write(this.buf.subarray(0, this.pos));
    this.written += this.pos;
    this.buf = Buffer.allocUnsafe(FLUSH_BYTES);
    this.pos = 0;
  }

  /** Writes what is queued; waits while the socket or the server is behind. */
  private async flush(): Promise<void> {
    this.writeBuf();
    this.written = 0;
    if (this.sock.writableNeedDrain) await this.waitFor(() => !this.sock.writableNeedDrain, 'drain');
    if (this.outstanding > MAX_OUTSTANDING) await this.waitFor(() => this.outstanding <= MAX_OUTSTANDING / 2);
    if (this.failure) throw this.failure;
  }

  /** Writes the rest and waits for every reply; throws the first error. */
  async finish(): Promise<void> {
    await this.flush();
    await this.waitFor(() => this.outstanding === 0);
    if (this.failure) throw this.failure;
  }

  close(): void {
    this.sock.destroy();
  }

  private waitFor(done: () => boolean, event?: 'drain'): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.failure || done()) {
          this.wake = undefined;
          if (event) this.sock.removeListener(event, check);
          resolve();
        }
      };
      this.wake = check;
      if (event) this.sock.on(event, check);
      check();
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake?.();
  }

  private onData(d: Buffer): void {
    let s = this.partial + d.toString('latin1');
    let at = 0;
    for (;;) {
      const nl = s.indexOf('\r\n', at);
      if (nl < 0) break;
      const line = s.slice(at, nl);
      at = nl + 2;
      this.outstanding--;
      const waiter = this.awaiting.shift();
      if (waiter) { waiter(line); continue; }
      const label = this.labels[this.head];
      this.labels[this.head++] = '';
      if (line.startsWith('-') && !this.failure) {
        const l = Buffer.isBuffer(label) ? label.subarray(0, 200).toString('utf8') : label;
        this.failure = new RespCommandError(`${l}: ${line.slice(1)}`, line.slice(1));
      }
      if (line[0] !== '+' && line[0] !== '-' && !this.failure) this.failure = new Error(`unexpected reply ${JSON.stringify(line.slice(0, 80))}`);
    }
    this.partial = s.slice(at);
    if (this.head > 4096 && this.head * 2 > this.labels.length) { this.labels = this.labels.slice(this.head); this.head = 0; }
    this.wake?.();
  }
}

const CRLF = Buffer.from('\r\n');
