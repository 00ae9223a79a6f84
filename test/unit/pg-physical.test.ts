// The WAL names and the tar reader of physical PostgreSQL backups (components/pg-physical.ts):
// segment numbers for any segment size, and a tar fed in arbitrary pieces gives back every file.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TarParser } from '../../functions/components/pg-physical.ts';
import { parseLsn, parseSegmentName, segmentName, segmentOf } from '../../functions/components/pg-physical-plan.ts';
import { IntegrityError } from '../../functions/core/errors.ts';

describe('WAL segment names', () => {
  it('the segment of a location, its file name and back, as PostgreSQL names them', () => {
    const mb16 = 16 * 1024 * 1024;
    // pg_walfile_name('0/2000028') = 000000010000000000000002; '1/A0000000' = 0000000100000001000000A0
    expect(segmentName(1, segmentOf(parseLsn('0/2000028'), mb16), mb16)).toBe('000000010000000000000002');
    expect(segmentName(1, segmentOf(parseLsn('1/A0000000'), mb16), mb16)).toBe('0000000100000001000000A0');
    expect(segmentName(3, segmentOf(parseLsn('1/A0000000'), 1024 * 1024 * 1024), 1024 * 1024 * 1024)).toBe('000000030000000100000002');
    const p = parseSegmentName('0000000100000001000000A0', mb16)!;
    expect(p.timeline).toBe(1);
    expect(segmentName(p.timeline, p.segno + 0x60n, mb16)).toBe('000000010000000200000000');
    expect(parseSegmentName('000000010000000000000002.00000028.backup', mb16)).toBeNull();
    expect(() => parseLsn('nope')).toThrow(IntegrityError);
  });
});

describe('TarParser', () => {
  it('reads every file of a tar fed in pieces of any size, and refuses one cut short', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'memvault-tar-'));
    const src = path.join(dir, 'src');
    mkdirSync(path.join(src, 'base', '1'), { recursive: true });
    const files: Record<string, Buffer> = {
      PG_VERSION: Buffer.from('15\n'),
      'base/1/1259': Buffer.alloc(8192 * 3 + 17, 7),
      'base/1/empty': Buffer.alloc(0),
      backup_label: Buffer.from('START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n'),
    };
    for (const [n, b] of Object.entries(files)) writeFileSync(path.join(src, n), b);
    const r = spawnSync('tar', ['--format=ustar', '-cf', path.join(dir, 'x.tar'), '-C', src, '.']);
    expect(r.status).toBe(0);
    const tar = readFileSync(path.join(dir, 'x.tar'));
    for (const piece of [1, 511, 512, 4096, 100_000]) {
      const p = new TarParser();
      const got: Record<string, Buffer[]> = {};
      const dirs: string[] = [];
      for (let i = 0; i < tar.length; i += piece) {
        for (const ev of p.push(tar.subarray(i, i + piece))) {
          const name = ev.h.name.replace(/^\.\//, '');
          if (ev.kind === 'header' && ev.h.type === '5') dirs.push(name);
          if (ev.kind === 'header' && ev.h.type === '0') got[name] = [];
          if (ev.kind === 'data') got[name].push(Buffer.from(ev.data));
        }
      }
      p.finish();
      expect(Object.fromEntries(Object.entries(got).map(([n, b]) => [n, Buffer.concat(b)]))).toEqual(files);
      expect(dirs).toContain('base/1/');
    }
    const cut = new TarParser();
    for (const _ of cut.push(tar.subarray(0, 2048))) { /* consume */ }
    expect(() => cut.finish()).toThrow(/cut short/);
    const bad = Buffer.from(tar);
    bad[10] ^= 1;
    expect(() => [...new TarParser().push(bad)]).toThrow(/checksum/);
  });
});
