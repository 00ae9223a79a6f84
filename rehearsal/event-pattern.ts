// EventBridge event-pattern matching, for the parts of the syntax memvault's
// failure rule uses: a field matches one of a list of literals (null too),
// `{"prefix"}`, `{"anything-but": {"prefix"}}` / `{"anything-but": [..]}`,
// `{"exists": bool}`; nested objects match field by field; `$or` takes any of
// its sub-patterns. An unsupported operator throws, so a pattern this does
// not understand never passes silently.
type Pattern = Record<string, unknown>;

function matchValue(rule: unknown, present: boolean, value: unknown): boolean {
  if (rule === null || typeof rule !== 'object') return present && value === rule;
  const r = rule as Record<string, unknown>;
  if ('exists' in r) return present === r.exists;
  if (!present) return false;
  if ('prefix' in r) return typeof value === 'string' && value.startsWith(String(r.prefix));
  if ('anything-but' in r) {
    const ab = r['anything-but'];
    if (value === null) return false;
    if (Array.isArray(ab)) return !ab.includes(value);
    if (ab && typeof ab === 'object' && 'prefix' in ab) return typeof value === 'string' && !value.startsWith(String((ab as { prefix: unknown }).prefix));
    return value !== ab;
  }
  throw new Error(`event-pattern: unsupported operator ${JSON.stringify(rule)}`);
}

export function matchesPattern(pattern: Pattern, event: Record<string, unknown>): boolean {
  for (const [key, rule] of Object.entries(pattern)) {
    if (key === '$or') {
      if (!(rule as Pattern[]).some((p) => matchesPattern(p, event))) return false;
      continue;
    }
    const present = Object.prototype.hasOwnProperty.call(event, key);
    const value = event[key];
    if (Array.isArray(rule)) {
      if (Array.isArray(value)) { if (!value.some((v) => rule.some((x) => matchValue(x, true, v)))) return false; continue; }
      if (!rule.some((x) => matchValue(x, present, value))) return false;
    } else if (rule && typeof rule === 'object') {
      if (!value || typeof value !== 'object') return false;
      if (!matchesPattern(rule as Pattern, value as Record<string, unknown>)) return false;
    } else {
      throw new Error(`event-pattern: field ${key}: expected a list or an object, got ${JSON.stringify(rule)}`);
    }
  }
  return true;
}

/** The "Step Functions Execution Status Change" event of an execution that ended so. */
export function statusChangeEvent(o: { stateMachineArn: string; executionArn: string; status: string; error?: string | null; cause?: string | null }): Record<string, unknown> {
  return {
    source: 'aws.states',
    'detail-type': 'Step Functions Execution Status Change',
    detail: { executionArn: o.executionArn, stateMachineArn: o.stateMachineArn, name: o.executionArn.split(':').pop(), status: o.status, error: o.error ?? null, cause: o.cause ?? null },
  };
}
