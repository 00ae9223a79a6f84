// The rehearsal of the deployed system (what `npm run rehearse` runs), per
// example config with an aws section: `cdk synth -c config=FILE` (bundled;
// the assembly is reused while its inputs are unchanged), then the flows a
// deployment runs by itself or from the console, each judged by what a user
// relies on: the execution SUCCEEDED, restored data equals the source, no
// call was denied. Slow (a minute or two per config): one deployment per
// config for the whole file, flows in the order a deployment lives them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployableConfigs } from '../../rehearsal/configs.ts';
import { deployRehearsal, type Rehearsal } from '../../rehearsal/deploy.ts';
import { backupRun, consoleRestore, deniedCalls, retention, rpoWatch, verifyDrill, type FlowResult } from '../../rehearsal/flows.ts';

const FLOW_TIMEOUT = 240_000;

function passed(f: FlowResult): void {
  // The problems name the execution, its error and cause: the assertion message is the diagnosis.
  expect(f.problems, `${f.config}: ${f.flow}`).toEqual([]);
  expect(f.ok).toBe(true);
}

describe.each(deployableConfigs())('rehearsal of %s', (config) => {
  let r: Rehearsal;
  beforeAll(async () => {
    r = await deployRehearsal(config);
  }, 900_000);
  afterAll(async () => {
    await r?.close();
  });

  it('creates every function of both stacks from its bundled asset, and names what it does not rehearse', () => {
    expect(r.model.stacks.map((s) => s.region).sort()).toEqual([r.drRegion, r.primaryRegion].sort());
    expect(r.lambda.stats().length).toBe(r.model.functions.length);
    for (const s of r.lambda.stats()) expect(s.bundleBytes, s.name).toBeGreaterThan(0);
    for (const n of r.overlaid.notRehearsed) expect(n.why).toMatch(/MongoDB/);
  });

  it('runs a scheduled backup-run of every component, with replication to the DR vault', async () => {
    passed(await backupRun(r));
  }, FLOW_TIMEOUT);

  it('runs the daily verify-drill schedule', async () => {
    passed(await verifyDrill(r));
  }, FLOW_TIMEOUT);

  it('restores from the console with the README\'s primary-region input, equal to the source', async () => {
    passed(await consoleRestore(r, 'primary'));
  }, FLOW_TIMEOUT);

  it('restores from the console with the README\'s DR-region input (from the secondary vault), equal to the source', async () => {
    passed(await consoleRestore(r, 'dr'));
  }, FLOW_TIMEOUT);

  it('runs the retention schedule (both vaults)', async () => {
    passed(await retention(r));
  }, FLOW_TIMEOUT);

  it('runs the rpo-watch schedule', async () => {
    passed(await rpoWatch(r));
  }, FLOW_TIMEOUT);

  it('denied no call of any function, state machine, schedule, rule or alarm', () => {
    const denied = deniedCalls(r).map((d) => `AccessDenied: ${d.principal} ${d.action} ${d.resources.join(', ')}`);
    const refused = r.sfn.deliveryFailures.map((d) => `${d.source} as ${d.principal} -> ${d.topicArn}: ${d.error}`);
    expect([...denied, ...refused]).toEqual([]);
  });
});
