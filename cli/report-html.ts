// Draws the recovery report (functions/core/report.ts) as one self-contained
// HTML page: inline CSS and inline SVG, no script, no external resource, so it
// can be mailed or attached to a ticket and opened anywhere. Per component:
//   - a stripe down the left edge in the rpo status colour (alert red when the
//     newest backup is older than the rpo, green within it, grey without a target)
//   - bars of backup sizes over time in the component's own colour, the new
//     bytes of each backup (what dedup did not save) as a darker inner bar
//   - measured restore times over time (in a darker shade of the component's
//     colour; red where over the rto) against a dashed rto line
//   - drill results as pass/fail squares
// And the text summary the CLI prints.
import type { ComponentReport, RecoveryReport } from '../functions/core/report.ts';
import { bytes, ms, table } from './format.ts';

/** Each component's colour, in config order (none is the alert, ok or rto colour). */
export const COMPONENT_COLORS = ['#1f5fd1', '#8e44ad', '#e6a100', '#138d9c', '#6d4c41', '#d6338a', '#5c6b73', '#9aa01c'] as const;
export const ALERT_COLOR = '#e0201b';
export const OK_COLOR = '#1e9e3a';
export const NEUTRAL_COLOR = '#b8b8b8';
export const RTO_COLOR = '#222222';

export function componentColor(index: number): string {
  return COMPONENT_COLORS[index % COMPONENT_COLORS.length];
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A colour darkened towards black by `f` (0..1). */
function darker(hex: string, f = 0.45): string {
  const n = parseInt(hex.slice(1), 16);
  const ch = (v: number) => Math.round(v * (1 - f)).toString(16).padStart(2, '0');
  return `#${ch(n >> 16)}${ch((n >> 8) & 255)}${ch(n & 255)}`;
}

function shortTime(iso: string): string {
  return iso.slice(0, 16).replace('T', ' ');
}

export function age(msValue: number | null): string {
  if (msValue === null) return '-';
  if (msValue < 120_000) return `${Math.round(msValue / 1000)} s`;
  if (msValue < 7_200_000) return `${Math.round(msValue / 60_000)} min`;
  if (msValue < 172_800_000) return `${(msValue / 3_600_000).toFixed(1)} h`;
  return `${(msValue / 86_400_000).toFixed(1)} d`;
}

const W = 1040;
const H = 170;
const PAD = { l: 70, r: 20, t: 14, b: 30 };

/** Bars of backup sizes over time (the last 60 backups), new bytes as a darker inner bar. */
function sizeChart(c: ComponentReport, color: string): string {
  const pts = c.backups.slice(-60);
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const max = Math.max(1, ...pts.map((p) => p.bytesTotal));
  const slot = iw / Math.max(pts.length, 8);
  const bw = Math.max(6, Math.min(60, slot * 0.7));
  const parts: string[] = [
    `<line x1="${PAD.l}" y1="${PAD.t + ih}" x2="${W - PAD.r}" y2="${PAD.t + ih}" stroke="#888"/>`,
    `<text x="${PAD.l - 6}" y="${PAD.t + 10}" text-anchor="end" class="ax">${esc(bytes(max))}</text>`,
    `<text x="${PAD.l - 6}" y="${PAD.t + ih}" text-anchor="end" class="ax">0</text>`,
  ];
  pts.forEach((p, k) => {
    const x = PAD.l + k * slot + (slot - bw) / 2;
    const h = Math.max(2, (p.bytesTotal / max) * ih);
    const nh = Math.min(h, (p.newBytes / max) * ih);
    parts.push(`<rect class="bar" x="${x.toFixed(1)}" y="${(PAD.t + ih - h).toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"><title>${esc(`${shortTime(p.time)} ${p.type}: ${bytes(p.bytesTotal)}, ${bytes(p.newBytes)} new`)}</title></rect>`);
    if (nh >= 1) parts.push(`<rect x="${(x + bw * 0.25).toFixed(1)}" y="${(PAD.t + ih - nh).toFixed(1)}" width="${(bw * 0.5).toFixed(1)}" height="${nh.toFixed(1)}" fill="${darker(color)}"/>`);
  });
  if (pts.length) {
    parts.push(`<text x="${PAD.l}" y="${H - 8}" class="ax">${esc(shortTime(pts[0].time))}</text>`);
    if (pts.length > 1) parts.push(`<text x="${W - PAD.r}" y="${H - 8}" text-anchor="end" class="ax">${esc(shortTime(pts.at(-1)!.time))}</text>`);
  } else {
    parts.push(`<text x="${W / 2}" y="${PAD.t + ih / 2}" text-anchor="middle" class="empty">no backups</text>`);
  }
  return `<svg class="chart sizes" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="backup sizes of ${esc(c.name)}">${parts.join('')}</svg>`;
}

/** Measured restore times over time, with the rto target as a dashed line. */
function restoreChart(c: ComponentReport, color: string): string {
  const pts = c.restores;
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const rto = c.rto.targetMs;
  const max = Math.max(1000, ...pts.map((p) => p.durationMs), rto ?? 0) * 1.15;
  const y = (v: number) => PAD.t + ih - (v / max) * ih;
  const t0 = pts.length ? Date.parse(pts[0].time) : 0;
  const t1 = pts.length ? Date.parse(pts.at(-1)!.time) : 1;
  const x = (t: number) => PAD.l + (pts.length > 1 && t1 > t0 ? ((t - t0) / (t1 - t0)) * (iw - 20) + 10 : iw / 2);
  const parts: string[] = [
    `<line x1="${PAD.l}" y1="${PAD.t + ih}" x2="${W - PAD.r}" y2="${PAD.t + ih}" stroke="#888"/>`,
    `<text x="${PAD.l - 6}" y="${PAD.t + 10}" text-anchor="end" class="ax">${esc(ms(max))}</text>`,
    `<text x="${PAD.l - 6}" y="${PAD.t + ih}" text-anchor="end" class="ax">0</text>`,
  ];
  if (rto !== null) {
    parts.push(`<line class="rto" x1="${PAD.l}" y1="${y(rto).toFixed(1)}" x2="${W - PAD.r}" y2="${y(rto).toFixed(1)}" stroke="${RTO_COLOR}" stroke-width="2" stroke-dasharray="8 5"/>`);
    parts.push(`<text x="${W - PAD.r}" y="${(y(rto) - 5).toFixed(1)}" text-anchor="end" class="ax">RTO ${esc(c.rto.target!)}</text>`);
  }
  if (pts.length) {
    const line = pts.map((p) => `${x(Date.parse(p.time)).toFixed(1)},${y(p.durationMs).toFixed(1)}`).join(' ');
    if (pts.length > 1) parts.push(`<polyline points="${line}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of pts) {
      const fill = p.withinRto === false ? ALERT_COLOR : color;
      parts.push(`<circle cx="${x(Date.parse(p.time)).toFixed(1)}" cy="${y(p.durationMs).toFixed(1)}" r="6" fill="${fill}"><title>${esc(`${shortTime(p.time)}: ${ms(p.durationMs)}`)}</title></circle>`);
    }
    parts.push(`<text x="${PAD.l}" y="${H - 8}" class="ax">${esc(shortTime(pts[0].time))}</text>`);
    if (pts.length > 1) parts.push(`<text x="${W - PAD.r}" y="${H - 8}" text-anchor="end" class="ax">${esc(shortTime(pts.at(-1)!.time))}</text>`);
  } else {
    parts.push(`<text x="${W / 2}" y="${PAD.t + ih / 2}" text-anchor="middle" class="empty">no restore measured yet</text>`);
  }
  return `<svg class="chart restores" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="restore times of ${esc(c.name)}">${parts.join('')}</svg>`;
}

function drillStrip(c: ComponentReport): string {
  if (!c.drills.length) return '<p class="muted">no drill results yet</p>';
  const last = c.drills.slice(-40);
  const boxes = last.map((d, k) => `<rect x="${k * 22}" y="2" width="18" height="18" fill="${d.ok ? OK_COLOR : ALERT_COLOR}"><title>${esc(`${shortTime(d.time)}: ${d.ok ? 'passed' : 'FAILED'}`)}</title></rect>`).join('');
  const passed = c.drills.filter((d) => d.ok).length;
  return `<div class="drills"><svg width="${last.length * 22}" height="22" viewBox="0 0 ${last.length * 22} 22">${boxes}</svg> <span>${passed} of ${c.drills.length} drills passed; last ${esc(shortTime(c.drills.at(-1)!.time))} ${c.drills.at(-1)!.ok ? 'passed' : 'FAILED'}</span></div>`;
}

function rpoText(c: ComponentReport): string {
  if (!c.rpo.target) return c.rpo.newestTime ? `newest backup ${age(c.rpo.ageMs)} old; no RPO target` : 'no backup yet; no RPO target';
  const now = c.rpo.ageMs === null ? 'no backup yet' : `newest backup ${age(c.rpo.ageMs)} old`;
  return `${c.rpo.exceeded ? 'RPO EXCEEDED' : 'RPO met'}: ${now}, target ${c.rpo.target}`;
}

function section(c: ComponentReport, index: number): string {
  const color = componentColor(index);
  const status = !c.rpo.target ? NEUTRAL_COLOR : c.rpo.exceeded ? ALERT_COLOR : OK_COLOR;
  const last = c.backups.at(-1);
  const newTotal = c.backups.reduce((n, b) => n + b.newBytes, 0);
  const logical = c.backups.reduce((n, b) => n + b.bytesTotal, 0);
  const slowest = c.restores.reduce((m, r) => Math.max(m, r.durationMs), 0);
  return `<section class="component${c.rpo.exceeded ? ' late' : ''}" id="c-${esc(c.name)}" style="border-left-color:${status}">
<h2><span class="swatch" style="background:${color}"></span>${esc(c.name)} <small>${esc(c.kind)}${c.critical ? ', critical' : ''}</small>
<span class="rpo" style="background:${status}">${esc(rpoText(c))}</span></h2>
<p>${c.backups.length} backups${last ? `; last ${esc(shortTime(last.time))} (${esc(last.type)}, ${esc(bytes(last.bytesTotal))}, ${esc(bytes(last.newBytes))} new)` : ''}${logical ? `; ${esc(bytes(newTotal))} new of ${esc(bytes(logical))} backed up (deduplication saved ${((1 - newTotal / logical) * 100).toFixed(0)}%)` : ''}</p>
<h3>Backup sizes <small>(bar: size of the backup; inner bar: new bytes)</small></h3>
${sizeChart(c, color)}
<h3>Restore time vs RTO <small>${c.rto.target ? `(target ${esc(c.rto.target)}; ${c.restores.length} measured${c.restores.length ? `, slowest ${esc(ms(slowest))}` : ''})` : '(no RTO target)'}</small></h3>
${restoreChart(c, darker(color, 0.3))}
<h3>Drills</h3>
${drillStrip(c)}
${c.masking.length ? `<p class="muted">drills and sandbox restores mask: ${c.masking.map(esc).join('; ')} (per-rule counts in each drill's output)</p>` : ''}
</section>`;
}

export function renderHtml(r: RecoveryReport): string {
  const late = r.components.filter((c) => c.rpo.exceeded).map((c) => c.name);
  const slow = r.components.filter((c) => c.restores.some((x) => x.withinRto === false)).map((c) => c.name);
  const failedDrills = r.components.filter((c) => c.drills.at(-1)?.ok === false).map((c) => c.name);
  const rows = r.components.map((c, k) => `<tr><td><span class="swatch" style="background:${componentColor(k)}"></span>${esc(c.name)}</td><td>${c.backups.length}</td><td>${esc(c.rpo.newestTime ? shortTime(c.rpo.newestTime) : '-')}</td><td>${esc(age(c.rpo.ageMs))}</td><td>${esc(c.rpo.target ?? '-')}</td><td class="${c.rpo.exceeded ? 'bad' : ''}">${c.rpo.target ? (c.rpo.exceeded ? 'EXCEEDED' : 'met') : '-'}</td><td>${c.restores.length ? esc(ms(c.restores.at(-1)!.durationMs)) : '-'}</td><td>${esc(c.rto.target ?? '-')}</td><td>${c.drills.length ? `${c.drills.filter((d) => d.ok).length}/${c.drills.length}` : '-'}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>memvault recovery report</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px 24px;color:#1b1b1b;background:#fff;width:1120px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 6px}h3{font-size:13px;margin:10px 0 2px;color:#444}
small,.muted,.ax{color:#666}.ax{font-size:11px;fill:#555}.empty{font-size:13px;fill:#999}
table{border-collapse:collapse;margin:8px 0 14px}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
td.bad{color:${ALERT_COLOR};font-weight:bold}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px}
.component{border-left:14px solid ${NEUTRAL_COLOR};padding:8px 0 10px 14px;margin:14px 0}
.rpo{color:#fff;font-size:13px;padding:2px 8px;margin-left:12px;border-radius:3px}
.drills span{vertical-align:5px;margin-left:6px}
.alert{background:#fde8e8;border:1px solid ${ALERT_COLOR};padding:6px 10px;margin:8px 0}
</style></head><body>
<h1>memvault recovery report</h1>
<p class="muted">vault ${esc(r.vault)} · generated ${esc(r.generatedAt)} · restores and drills from ${esc(r.metricsFile ?? 'no metrics file (set MEMVAULT_METRICS_FILE)')}</p>
${late.length ? `<p class="alert">RPO exceeded: ${esc(late.join(', '))}</p>` : ''}${slow.length ? `<p class="alert">restore slower than RTO: ${esc(slow.join(', '))}</p>` : ''}${failedDrills.length ? `<p class="alert">last drill failed: ${esc(failedDrills.join(', '))}</p>` : ''}${r.damaged || r.chainProblems ? `<p class="alert">${r.damaged} damaged manifest(s), ${r.chainProblems} broken chain link(s): run memvault verify</p>` : ''}
<table><tr><th>component</th><th>backups</th><th>newest</th><th>age</th><th>RPO</th><th>status</th><th>last restore</th><th>RTO</th><th>drills passed</th></tr>
${rows}
</table>
${r.components.map(section).join('\n')}
</body></html>
`;
}

/** The text summary the CLI prints. */
export function renderText(r: RecoveryReport): string {
  const rows = r.components.map((c) => {
    const last = c.backups.at(-1);
    const restore = c.restores.at(-1);
    return [
      c.name, String(c.backups.length), last ? shortTime(last.time) : '-', last ? last.type : '-', last ? bytes(last.bytesTotal) : '-', last ? bytes(last.newBytes) : '-',
      age(c.rpo.ageMs), c.rpo.target ?? '-', c.rpo.target ? (c.rpo.exceeded ? 'EXCEEDED' : 'met') : '-',
      restore ? ms(restore.durationMs) : '-', c.rto.target ?? '-', restore?.withinRto === false ? 'OVER' : restore?.withinRto ? 'met' : '-',
      c.drills.length ? `${c.drills.filter((d) => d.ok).length}/${c.drills.length}` : '-',
    ];
  });
  const lines = [
    `recovery report for ${r.vault} at ${r.generatedAt}`,
    table(['component', 'backups', 'last backup', 'type', 'size', 'new', 'age', 'rpo', 'rpo status', 'last restore', 'rto', 'rto status', 'drills'], rows),
    ...r.components.filter((c) => c.rpo.exceeded).map((c) => `RPO EXCEEDED ${c.name}: ${c.rpo.ageMs === null ? 'no backup yet' : `newest backup ${age(c.rpo.ageMs)} old`}, target ${c.rpo.target}`),
    ...r.components.flatMap((c) => c.restores.filter((x) => x.withinRto === false).slice(-1).map((x) => `RTO MISSED ${c.name}: restore at ${shortTime(x.time)} took ${ms(x.durationMs)}, target ${c.rto.target}`)),
    ...r.components.filter((c) => c.drills.at(-1)?.ok === false).map((c) => `DRILL FAILED ${c.name}: last drill at ${shortTime(c.drills.at(-1)!.time)}`),
    ...(r.damaged || r.chainProblems ? [`${r.damaged} damaged manifest(s), ${r.chainProblems} broken chain link(s): run \`memvault verify\``] : []),
    ...(r.metricsFile ? [] : ['no metrics file: restore times and drill results are read from MEMVAULT_METRICS_FILE (or --metrics FILE)']),
  ];
  return lines.join('\n');
}
