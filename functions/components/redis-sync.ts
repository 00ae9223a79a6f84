// memvault as a Redis master for one full sync: the restore target is told
// REPLICAOF <this listener>, connects, and is sent an RDB stream (written by
// redis-rdb.ts from the backup) that it loads at its own pace, as it would
// load a dump file; then the caller turns it back into a master (REPLICAOF NO
// ONE) with the data.
//
// Protocol (the master side of Redis replication, as much as a full sync needs):
//   replica: PING                        -> +PONG
//            AUTH [user] password        -> +OK (the one-time password set as the target's masterauth), else -WRONGPASS
//            REPLCONF ...                -> +OK
//            PSYNC <replid|?> <offset>   -> +FULLRESYNC <40 hex> 0, then "$EOF:<40 bytes>\r\n", the RDB, the 40 bytes
//   (REPLCONF/PSYNC before AUTH get -NOAUTH.) The EOF form (capa eof, every
//   replica since Redis 2.8.18) lets the RDB stream out as it is written,
//   without knowing its length. After it, the replica sends REPLCONF ACKs
//   (read and dropped) and the link is kept, with a PING every few seconds,
//   until close(). One replica only: the listener stops accepting at the
//   first PSYNC, and a second connection after that means the first sync failed.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import net from 'node:net';

export class SyncLinkError extends Error {
  override name = 'SyncLinkError';
}

/** Parses RESP arrays of bulk strings (what a replica sends) from a byte stream. */
function parseCommands(buf: Buffer): { cmds: string[][]; rest: Buffer } {
  const cmds: string[][] = [];
  let off = 0;
  for (;;) {
    if (off >= buf.length) break;
    if (buf[off] !== 0x2a /* * */) {
      // inline command: one line
      const nl = buf.indexOf('\r\n', off);
      if (nl < 0) break;
      const line = buf.subarray(off, nl).toString('latin1').trim();
      off = nl + 2;
      if (line) cmds.push(line.split(/\s+/));
      continue;
    }
    const nl = buf.indexOf('\r\n', off);
    if (nl < 0) break;
    const n = Number(buf.subarray(off + 1, nl).toString('latin1'));
    let p = nl + 2;
    const args: string[] = [];
    let complete = true;
    for (let i = 0; i < n; i++) {
      const e = buf.indexOf('\r\n', p);
      if (e < 0 || buf[p] !== 0x24 /* $ */) { complete = false; break; }
      const len = Number(buf.subarray(p + 1, e).toString('latin1'));
      if (buf.length < e + 2 + len + 2) { complete = false; break; }
      args.push(buf.subarray(e + 2, e + 2 + len).toString('latin1'));
      p = e + 2 + len + 2;
    }
    if (!complete) break;
    cmds.push(args);
    off = p;
  }
  return { cmds, rest: buf.subarray(off) };
}

export interface ReplicaLink {
  /** Writes RDB bytes; resolves when the socket can take more. */
  write(b: Buffer): Promise<void>;
  /** Ends the RDB stream (the EOF mark). */
  end(): Promise<void>;
  /** Set when the replica closed the link or a second connection came (the sync failed). */
  readonly failure: Error | undefined;
}

export class SyncMaster {
  private link: ReplicaLink | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly sockets = new Set<net.Socket>();
  private failed: Error | undefined;
  private waiter: { resolve: (l: ReplicaLink) => void; reject: (e: Error) => void } | undefined;
  /** Number of replica connections seen (a second one after a PSYNC means the sync failed). */
  connections = 0;

  private constructor(private readonly server: net.Server, private readonly password: Buffer) {}

  /** Listens on host:port (port 0: any free port). */
  static async listen(host: string, port: number): Promise<SyncMaster> {
    const server = net.createServer();
    const m = new SyncMaster(server, Buffer.from(randomBytes(24).toString('hex')));
    server.on('connection', (s) => m.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.removeListener('error', reject); resolve(); });
    });
    return m;
  }

  /** The one-time password the target must send (set it as the target's masterauth). */
  get secret(): string {
    return this.password.toString('latin1');
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Resolves with the link once a replica has authenticated and sent PSYNC (the RDB header sent); rejects after timeoutMs. */
  waitForReplica(timeoutMs: number): Promise<ReplicaLink> {
    if (this.link) return Promise.resolve(this.link);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiter = undefined; reject(new SyncLinkError(`no replica connected within ${timeoutMs / 1000} s`)); }, timeoutMs);
      this.waiter = {
        resolve: (l) => { clearTimeout(timer); resolve(l); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  close(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private fail(err: Error): void {
    this.failed ??= err;
  }

  private accept(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.setNoDelay(true);
    this.connections++;
    if (this.link) {
      // The replica reconnects when it could not load what it was sent.
      this.fail(new SyncLinkError('the target dropped the sync and connected again (it could not load the stream: see its log)'));
      sock.destroy();
      return;
    }
    let pend: Buffer = Buffer.alloc(0);
    let authed = false;
    let eof = false;
    const onData = (d: Buffer) => {
      pend = pend.length ? Buffer.concat([pend, d]) : d;
      const { cmds, rest } = parseCommands(pend);
      pend = rest;
      for (const args of cmds) {
        const cmd = (args[0] ?? '').toUpperCase();
        if (cmd === 'PING') sock.write('+PONG\r\n');
        else if (cmd === 'AUTH') {
          const pw = Buffer.from(args[args.length - 1] ?? '', 'latin1');
          authed = pw.length === this.password.length && timingSafeEqual(pw, this.password);
          sock.write(authed ? '+OK\r\n' : '-WRONGPASS invalid username-password pair\r\n');
        } else if (!authed) sock.write('-NOAUTH Authentication required.\r\n');
        else if (cmd === 'REPLCONF') {
          for (let i = 1; i + 1 < args.length; i += 2) if (args[i].toLowerCase() === 'capa' && args[i + 1].toLowerCase() === 'eof') eof = true;
          sock.write('+OK\r\n');
        } else if (cmd === 'PSYNC' || cmd === 'SYNC') {
          if (this.link) { sock.destroy(); return; }
          if (!eof) {
            // The RDB is streamed without knowing its length: only replicas that announce capa eof (Redis 2.8.18 and later) take it.
            sock.destroy();
            this.waiter?.reject(new SyncLinkError('the target does not take a streamed RDB (no REPLCONF capa eof: Redis older than 2.8.18)'));
            this.waiter = undefined;
            return;
          }
          sock.removeListener('data', onData);
          sock.on('data', () => undefined); // REPLCONF ACKs
          this.startSync(sock, cmd === 'PSYNC');
          return;
        } else sock.write(`-ERR memvault sync: unexpected command ${cmd.slice(0, 40)}\r\n`);
      }
    };
    sock.on('data', onData);
  }

  private startSync(sock: net.Socket, psync: boolean): void {
    this.server.close(); // one replica
    const mark = randomBytes(20).toString('hex');
    if (psync) sock.write(`+FULLRESYNC ${randomBytes(20).toString('hex')} 0\r\n`);
    sock.write(`$EOF:${mark}\r\n`);
    let ended = false;
    sock.on('close', () => this.fail(new SyncLinkError(ended ? 'the target closed the replication link after the stream (it could not load it: see its log)' : 'the target closed the replication link during the stream')));
    const self = this;
    const drain = () => new Promise<void>((resolve) => {
      if (!sock.writableNeedDrain || sock.destroyed) { resolve(); return; }
      const done = () => { sock.removeListener('drain', done); sock.removeListener('close', done); resolve(); };
      sock.on('drain', done);
      sock.on('close', done);
    });
    this.link = {
      async write(b: Buffer) {
        if (self.failed) throw self.failed;
        sock.write(b);
        if (sock.writableNeedDrain) await drain();
        if (self.failed) throw self.failed;
      },
      async end() {
        sock.write(mark);
        ended = true;
        await drain();
        // Keep the link alive while the target loads (it times out a silent master after repl-timeout).
        self.pingTimer = setInterval(() => { if (!sock.destroyed) sock.write('*1\r\n$4\r\nPING\r\n'); }, 5000);
        self.pingTimer.unref();
        if (self.failed) throw self.failed;
      },
      get failure() { return self.failed; },
    };
    this.waiter?.resolve(this.link);
    this.waiter = undefined;
  }
}
