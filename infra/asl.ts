// Reads statemachines/<name>.asl.json and binds every ${Placeholder} the way
// the contract with the local runtime says:
//   ${<Pascal>FunctionArn}  -> the handler functions/handlers/<kebab>.ts
//                              (exporting `handler`), one Lambda function each
//   anything else           -> listed with its local value in
//                              statemachines/substitutions.json; the AWS value
//                              comes from infra/substitutions.ts or from
//                              aws.substitutions in memvault.yaml
// A placeholder with no binding fails synth with the file, the placeholder
// and what to add.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../functions/core/errors.ts';

const PLACEHOLDER = /\$\{([A-Za-z][A-Za-z0-9]*)\}/g;
const FUNCTION_ARN = /^([A-Z][A-Za-z0-9]*)FunctionArn$/;

export interface AslDefinition {
  name: string;
  file: string;
  text: string;
  placeholders: string[];
}

export function placeholdersOf(text: string): string[] {
  return [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => m[1]))].sort();
}

/** PascalCase to kebab-case: SnapshotPoll -> snapshot-poll, ExportS3Files -> export-s3-files. */
export function pascalToKebab(s: string): string {
  return s
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1-$2')
    .toLowerCase();
}

export function kebabToPascal(s: string): string {
  return s.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}

export function loadDefinition(dir: string, name: string): AslDefinition {
  const file = path.join(dir, `${name}.asl.json`);
  if (!existsSync(file)) throw new ConfigError(`state machine ${name}: ${file} not found`);
  const text = readFileSync(file, 'utf8');
  return { name, file, text, placeholders: placeholdersOf(text) };
}

/** statemachines/substitutions.json: placeholder -> local value. */
export function loadLocalSubstitutions(dir: string): Record<string, string> {
  const file = path.join(dir, 'substitutions.json');
  if (!existsSync(file)) return {};
  const raw = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${file}: expected an object of placeholder: value`);
  return Object.fromEntries(Object.entries(raw as Record<string, unknown>).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

export interface Bindings {
  /** Placeholder -> handler (kebab-case file name). */
  functions: Map<string, string>;
  /** Placeholder -> AWS value. */
  values: Record<string, string>;
}

export interface BindOptions {
  handlersDir: string;
  /** Local values from statemachines/substitutions.json (names that are known placeholders). */
  local: Record<string, string>;
  /** AWS values: infra/substitutions.ts merged with aws.substitutions. */
  aws: Record<string, string>;
}

/** Binds every placeholder of the definitions, or throws one ConfigError listing every unbound one. */
export function bind(defs: AslDefinition[], o: BindOptions): Bindings {
  const functions = new Map<string, string>();
  const values: Record<string, string> = {};
  const problems: string[] = [];
  for (const def of defs) {
    for (const ph of def.placeholders) {
      const fm = FUNCTION_ARN.exec(ph);
      if (fm) {
        const kebab = pascalToKebab(fm[1]);
        const entry = path.join(o.handlersDir, `${kebab}.ts`);
        if (!existsSync(entry)) {
          problems.push(`${def.file}: \${${ph}} has no binding: expected the handler ${entry} (exporting handler)`);
        } else if (!/export\s+(const|let|async\s+function|function)\s+handler\b|export\s*\{[^}]*\bhandler\b[^}]*\}/.test(readFileSync(entry, 'utf8'))) {
          problems.push(`${def.file}: \${${ph}}: ${entry} does not export \`handler\``);
        } else {
          functions.set(ph, kebab);
        }
        continue;
      }
      if (ph in o.aws) {
        values[ph] = o.aws[ph];
      } else if (ph in o.local) {
        problems.push(`${def.file}: \${${ph}} has a local value (${o.local[ph]}) but no AWS value: add it to infra/substitutions.ts or aws.substitutions.${ph}`);
      } else {
        problems.push(`${def.file}: \${${ph}} has no binding: it is neither <Handler>FunctionArn nor listed in statemachines/substitutions.json`);
      }
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return { functions, values };
}

/** The definition with every placeholder replaced by a dummy, for analysis (Map modes, referenced ARNs). */
export function parsedForAnalysis(def: AslDefinition, values: Record<string, string>): unknown {
  const text = def.text.replace(PLACEHOLDER, (_m, ph: string) => values[ph] ?? `arn:placeholder:${ph}`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${def.file}: not valid JSON once its placeholders are substituted with their AWS values: ${(err as Error).message}`);
  }
}

/** True when any Map state of the definition runs in DISTRIBUTED mode (it starts child executions). */
export function hasDistributedMap(def: AslDefinition, values: Record<string, string>): boolean {
  let found = false;
  const walk = (node: unknown): void => {
    if (found || !node || typeof node !== 'object') return;
    if (Array.isArray(node)) return node.forEach(walk);
    const o = node as Record<string, unknown>;
    const pc = (o.ItemProcessor as { ProcessorConfig?: { Mode?: string } } | undefined)?.ProcessorConfig;
    if (o.Type === 'Map' && pc?.Mode === 'DISTRIBUTED') {
      found = true;
      return;
    }
    Object.values(o).forEach(walk);
  };
  walk(parsedForAnalysis(def, values));
  return found;
}
