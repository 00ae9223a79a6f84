// memvault's side of a Redis full sync (functions/components/redis-sync.ts),
// spoken to by a scripted replica on loopback: nothing is sent to a client
// without the one-time password, a replica that cannot take a streamed RDB is
// refused, and a replica that authenticates gets +FULLRESYNC, the EOF-marked
// stream and the mark after it. (Real targets: test/integration/redis-rdb-sync.test.ts.)
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncMaster } from '../../functions/components/redis-sync.ts';

const cmd = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

/** A replica connection: send commands, read what came back so far. */
async function replica(port: number) {
  const s = net.connect(port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  let got = Buffer.alloc(0);
  s.on('data', (d) => { got = Buffer.concat([got, d]); });
  const until = async (f: (t: Buffer) => boolean) => { for (let i = 0; i < 200 && !f(got); i++) await new Promise((r) => setTimeout(r, 10)); return got; };
  return { s, send: (x: string) => s.write(x), until, get: () => got };
}

let master: SyncMaster | undefined;
afterEach(() => master?.close());

describe('redis sync master', () => {
  it('answers nothing but PING and AUTH without the one-time password', async () => {
    master = await SyncMaster.listen('127.0.0.1', 0);
    const r = await replica(master.port);
    r.send(cmd('PING') + cmd('REPLCONF', 'capa', 'eof') + cmd('PSYNC', '?', '-1') + cmd('AUTH', 'wrong-password') + cmd('PSYNC', '?', '-1'));
    const t = (await r.until((b) => b.toString().split('\r\n').length > 5)).toString();
    expect(t).toBe('+PONG\r\n-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n-WRONGPASS invalid username-password pair\r\n-NOAUTH Authentication required.\r\n');
    r.s.destroy();
  });

  it('refuses a replica without capa eof, and streams the RDB between EOF marks to one that has it', async () => {
    master = await SyncMaster.listen('127.0.0.1', 0);
    const old = await replica(master.port);
    const waited = master.waitForReplica(5000);
    old.send(cmd('AUTH', master.secret) + cmd('REPLCONF', 'capa', 'psync2') + cmd('PSYNC', '?', '-1'));
    await expect(waited).rejects.toThrow(/no REPLCONF capa eof/);
    master.close();

    master = await SyncMaster.listen('127.0.0.1', 0);
    const port = master.port;
    const r = await replica(port);
    const link = master.waitForReplica(5000);
    r.send(cmd('PING') + cmd('AUTH', 'default', master.secret) + cmd('REPLCONF', 'listening-port', '6380') + cmd('REPLCONF', 'capa', 'eof', 'capa', 'psync2') + cmd('PSYNC', '?', '-1'));
    const l = await link;
    await l.write(Buffer.from('REDIS0010...rdb bytes...'));
    await l.end();
    const t = (await r.until((b) => /\$EOF:([0-9a-f]{40})\r\n[\s\S]*\1$/.test(b.toString()))).toString();
    expect(t).toMatch(/^\+PONG\r\n\+OK\r\n\+OK\r\n\+OK\r\n\+FULLRESYNC [0-9a-f]{40} 0\r\n\$EOF:([0-9a-f]{40})\r\nREDIS0010\.\.\.rdb bytes\.\.\.\1$/);
    // One replica: the listener takes no other connection.
    await expect(new Promise((resolve, reject) => { const s = net.connect(port, '127.0.0.1'); s.once('connect', () => { s.destroy(); resolve('connected'); }); s.once('error', reject); })).rejects.toThrow(/ECONNREFUSED/);
    r.s.destroy();
  });
});
