// What the control-plane fakes share: the error they throw (serialized by the
// gateway into the service's wire format), the per-call context the gateway
// hands them (region, caller, and the IAM check they must pass for each
// resource they touch), the query-protocol parameter readers and a small XML
// writer for the query-protocol responses (SNS, RDS).
import { randomBytes, randomUUID } from 'node:crypto';

/** An AWS error response: code is what the SDK surfaces as err.name. */
export class AwsError extends Error {
  readonly code: string;
  readonly status: number;
  readonly fault: 'Sender' | 'Receiver';
  /** Set on the denial of an IAM check, whatever the service calls it. */
  readonly accessDenied: boolean;
  constructor(code: string, message: string, status = 400, opts: { fault?: 'Sender' | 'Receiver'; accessDenied?: boolean } = {}) {
    super(message);
    this.name = code;
    this.code = code;
    this.status = status;
    this.fault = opts.fault ?? (status >= 500 ? 'Receiver' : 'Sender');
    this.accessDenied = opts.accessDenied ?? false;
  }
}

export interface CallContext {
  region: string;
  account: string;
  /** Role ARN of the caller, or a service principal (events.amazonaws.com). */
  principal: string;
  /**
   * Passes if the caller may perform action on resource with these context
   * keys (added to the ones every request has); throws the calling service's
   * AccessDenied AwsError otherwise. Each check is recorded with the call.
   */
  authorize(action: string, resource: string, context?: Record<string, string | string[]>): void;
}

export const requestId = (): string => randomUUID();

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** n random letters and digits (Secrets Manager's ARN suffix, RDS resource ids). */
export function randomSuffix(n: number): string {
  const b = randomBytes(n);
  return [...b].map((x) => ALNUM[x % ALNUM.length]).join('');
}

// ---- query protocol (form-encoded input) ----

export type QueryParams = Map<string, string>;

export function parseQuery(body: string): QueryParams {
  return new Map(new URLSearchParams(body));
}

/** Members of a query-protocol list: Prefix.member.1, Prefix.member.2... (or Prefix.Tag.1 for RDS's named members). */
export function queryList(p: QueryParams, prefix: string, member: string): string[] {
  const out: string[] = [];
  for (let i = 1; p.has(`${prefix}.${member}.${i}`); i++) out.push(p.get(`${prefix}.${member}.${i}`)!);
  return out;
}

/** Structures of a query-protocol list: each as a map of its fields (Prefix.Member.N.Field...). */
export function queryStructList(p: QueryParams, prefix: string, member: string): QueryParams[] {
  const out: QueryParams[] = [];
  for (let i = 1; ; i++) {
    const head = `${prefix}.${member}.${i}.`;
    const m = new Map<string, string>();
    for (const [k, v] of p) if (k.startsWith(head)) m.set(k.slice(head.length), v);
    if (m.size === 0) return out;
    out.push(m);
  }
}

// ---- XML for query-protocol responses ----

/** A list rendered as <Name><Member>..</Member>...</Name>. */
export class XmlList {
  constructor(
    readonly member: string,
    readonly items: XmlValue[],
  ) {}
}
export type XmlValue = string | number | boolean | Date | undefined | null | XmlList | { [k: string]: XmlValue };

export function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

export function toXml(name: string, v: XmlValue): string {
  if (v === undefined || v === null) return '';
  if (v instanceof Date) return `<${name}>${v.toISOString()}</${name}>`;
  if (v instanceof XmlList) return `<${name}>${v.items.map((i) => toXml(v.member, i)).join('')}</${name}>`;
  if (typeof v === 'object') return `<${name}>${Object.entries(v).map(([k, x]) => toXml(k, x)).join('')}</${name}>`;
  return `<${name}>${xmlEscape(String(v))}</${name}>`;
}

/** <OpResponse xmlns=NS><OpResult>...</OpResult><ResponseMetadata>...</ResponseMetadata></OpResponse> */
export function queryResponse(op: string, ns: string, result: Record<string, XmlValue> | undefined): string {
  const body = result ? toXml(`${op}Result`, result) : '';
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${op}Response xmlns="${ns}">${body}<ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata></${op}Response>`;
}

export function queryError(ns: string, e: AwsError): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${ns}"><Error><Type>${e.fault}</Type><Code>${xmlEscape(e.code)}</Code><Message>${xmlEscape(e.message)}</Message></Error><RequestId>${requestId()}</RequestId></ErrorResponse>`;
}

// ---- JSON protocol input helpers ----

export function str(input: Record<string, unknown>, field: string, required: true): string;
export function str(input: Record<string, unknown>, field: string, required?: false): string | undefined;
export function str(input: Record<string, unknown>, field: string, required = false): string | undefined {
  const v = input[field];
  if (v === undefined || v === null) {
    if (required) throw new AwsError('ValidationException', `1 validation error detected: Value null at '${lcFirst(field)}' failed to satisfy constraint: Member must not be null`);
    return undefined;
  }
  if (typeof v !== 'string') throw new AwsError('ValidationException', `${field}: expected a string`);
  return v;
}

export function lcFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** A page of items after the opaque token, and the token of the next page. */
export function paginate<T>(items: T[], max: number, token: string | undefined, badToken: () => AwsError): { page: T[]; next?: string } {
  let start = 0;
  if (token) {
    const n = Number(Buffer.from(token, 'base64url').toString('utf8').replace(/^p:/, ''));
    if (!Number.isInteger(n) || n < 0 || !Buffer.from(token, 'base64url').toString('utf8').startsWith('p:')) throw badToken();
    start = n;
  }
  const page = items.slice(start, start + max);
  const end = start + page.length;
  return { page, next: end < items.length ? Buffer.from(`p:${end}`).toString('base64url') : undefined };
}
