// This machine's memory of the vaults it has used: per vault (url and id) and
// component, the highest backup sequence number it has seen. The catalog
// compares the vault with it, so a vault whose newest backups were deleted
// together with their heads (or that was rolled back to an older copy) is
// reported instead of silently offering an older backup as the latest.
//
// One JSON file, replaced atomically (temporary file + rename), mode 0600:
//   $MEMVAULT_STATE_DIR/seen.json, else $XDG_STATE_HOME/memvault/seen.json,
//   else ~/.local/state/memvault/seen.json.
// Not used on Lambda (no persistent local disk): there the vault's heads serve.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { SeenMemory } from '../core/catalog.ts';

type Seen = Record<string, Record<string, { seq: number; id: string; time: string }>>;

export class FileSeenMemory implements SeenMemory {
  private queue: Promise<void> = Promise.resolve();
  constructor(readonly file: string) {}

  private async load(): Promise<Seen> {
    try {
      const d = JSON.parse(await fs.readFile(this.file, 'utf8')) as Seen;
      return d && typeof d === 'object' ? d : {};
    } catch {
      return {};
    }
  }

  async get(vault: string): Promise<Seen[string]> {
    return (await this.load())[vault] ?? {};
  }

  record(vault: string, component: string, seen: { seq: number; id: string; time: string }): Promise<void> {
    // Serialised within the process; across processes the last writer wins, and only ever with a
    // sequence number it has seen (a lost update forgets a little, never invents a backup).
    this.queue = this.queue.then(async () => {
      const all = await this.load();
      const cur = all[vault]?.[component];
      if (cur && cur.seq >= seen.seq) return;
      (all[vault] ??= {})[component] = seen;
      await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const tmp = `${this.file}.tmp-${randomBytes(6).toString('hex')}`;
      await fs.writeFile(tmp, JSON.stringify(all, null, 1), { mode: 0o600 });
      await fs.rename(tmp, this.file);
    }).catch(() => undefined);
    return this.queue;
  }
}

/** The memory for this machine, or null where there is none (Lambda, or MEMVAULT_STATE_DIR=off). */
export function localSeenMemory(env = process.env): SeenMemory | null {
  if (env.AWS_LAMBDA_FUNCTION_NAME || env.MEMVAULT_STATE_DIR === 'off') return null;
  const dir = env.MEMVAULT_STATE_DIR
    ?? path.join(env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state'), 'memvault');
  return new FileSeenMemory(path.join(dir, 'seen.json'));
}
