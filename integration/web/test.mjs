// Drives drover's page in headless Chromium with playwright-core. Run by integration/web.rs,
// which starts drover and passes DROVER_URL, DROVER_USER, DROVER_PASSWORD, DROVER_CSV,
// DROVER_BIN, DROVER_STATE_DIR, DROVER_BMC, DROVER_BMC_USER, DROVER_BMC_PASSWORD_FILE (an
// ipmi_sim BMC), DROVER_POOL_PEER (the pool address of a second member), CHROMIUM and
// SCREENSHOTS. Prints "web test: ok" on success;
// any failure throws and exits non-zero.
import { envOf, launch, screenshots } from './lib.mjs';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';

const env = envOf('web');
const url = env('DROVER_URL');
const shots = env('SCREENSHOTS');
const shot = screenshots(shots);
const step = (s) => console.log(`web test: ${s}`);

const browser = await launch(env('CHROMIUM'));
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(15000);
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  step('open the page: the login form shows');
  await page.goto(url);
  await page.locator('#login-form').waitFor();
  await shot(page, 'login');

  step('a wrong password is refused with a message');
  await page.fill('#login-user', env('DROVER_USER'));
  await page.fill('#login-password', 'not the password');
  await page.click('#login-submit');
  await page.locator('#message', { hasText: 'wrong user or password' }).waitFor();

  step('log in');
  await page.fill('#login-password', env('DROVER_PASSWORD'));
  await page.click('#login-submit');
  await page.locator('#services tbody tr', { hasText: 'http' }).waitFor();
  await page.locator('#live.on').waitFor();
  await shot(page, 'overview');

  step('add a node and see it appear');
  await page.click('nav button[data-view=nodes]');
  const form = page.locator('#node-form');
  await form.locator('[name=name]').fill('web01');
  await form.locator('[name=mac]').fill('52:54:00:aa:00:01');
  await form.locator('[name=group]').fill('web');
  await page.click('#node-submit');
  await page.locator('#nodes tbody tr[data-name=web01]').waitFor();
  await page.locator('#node-count', { hasText: '(1 node)' }).waitFor();

  step('the agent reports a boot: the node turns up live, with its timeline');
  await page.locator('#nodes tbody tr[data-name=web01] td.node-unknown').waitFor();
  // Boot events are accepted only from the node's own address: this test plays the node.
  execFileSync(env('DROVER_BIN'), ['--state-dir', env('DROVER_STATE_DIR'), 'node', 'set', 'web01',
    '--ip', '127.0.0.1']);
  for (const [stage, detail] of [['agent', 'network up on eth0'], ['root', 'root filesystem in RAM'],
    ['ready', 'switching to the image\'s init']]) {
    const r = await fetch(`${url}/boot/52:54:00:aa:00:01/events`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ stage, detail }),
    });
    assert.equal(r.status, 204, `posting ${stage}`);
    await page.locator(`#nodes tbody tr[data-name=web01] td.node-${stage === 'ready' ? 'up' : 'booting'}`).waitFor();
  }
  await page.locator('#nodes tbody tr[data-name=web01] button', { hasText: 'Timeline' }).click();
  await page.locator('#timeline-events tbody tr[data-stage=ready]').waitFor();
  await page.locator('#timeline-state', { hasText: 'up' }).waitFor();
  assert.equal(await page.locator('#timeline-events tbody tr').count(), 3);
  await shot(page, 'timeline');

  step('power the node through its BMC (ipmi_sim) from the timeline panel');
  execFileSync(env('DROVER_BIN'), ['--state-dir', env('DROVER_STATE_DIR'), 'node', 'set', 'web01',
    '--bmc', env('DROVER_BMC'), '--bmc-user', env('DROVER_BMC_USER'),
    '--bmc-password-file', env('DROVER_BMC_PASSWORD_FILE')]);
  await page.click('#power-actions button[data-power=on]');
  await page.locator('#power-result.ok', { hasText: 'web01: power on sent' }).waitFor();
  await page.click('#power-actions button[data-power=status]');
  await page.locator('#power-result.ok', { hasText: 'web01: on' }).waitFor();
  await page.click('#power-actions button[data-device=pxe]');
  await page.locator('#power-result.ok', { hasText: 'pxe' }).waitFor();
  await shot(page, 'power');
  await page.click('#power-actions button[data-power=off]');
  await page.locator('#power-result.ok', { hasText: 'web01: power off sent' }).waitFor();
  await page.click('#timeline-close');

  step('a bad MAC is refused and its field marked');
  await form.locator('[name=name]').fill('web02');
  await form.locator('[name=mac]').fill('52:54:00:aa:00');
  await page.click('#node-submit');
  await page.locator('#message', { hasText: 'not a MAC address' }).waitFor();
  await form.locator('[name=mac].bad').waitFor();
  await form.locator('[name=name]').fill('');
  await form.locator('[name=mac]').fill('');

  step('edit the node');
  await page.locator('#nodes tbody tr[data-name=web01] button', { hasText: 'Edit' }).click();
  await form.locator('[name=group]').fill('web2');
  await page.click('#node-submit');
  await page.locator('#nodes tbody tr[data-name=web01] td', { hasText: 'web2' }).waitFor();

  step('import a CSV of 200 nodes');
  await page.setInputFiles('#csv-file', env('DROVER_CSV'));
  const started = Date.now();
  await page.click('#csv-import');
  await page.locator('#message', { hasText: 'imported 200 nodes' }).waitFor();
  await page.locator('#node-count', { hasText: '(201 nodes)' }).waitFor();
  step(`import shown after ${Date.now() - started} ms`);
  assert.equal(await page.locator('#nodes tbody tr').count(), 100, 'one page of 100 rows');
  await page.click('#nodes-next');
  await page.locator('#nodes-page', { hasText: '101\u2013200 of 201' }).waitFor();
  await page.click('#nodes-prev');

  step('a change made with the CLI appears without a reload (server-sent events)');
  execFileSync(env('DROVER_BIN'), ['--state-dir', env('DROVER_STATE_DIR'), 'node', 'add', 'cli01',
    '--mac', '52:54:00:bb:00:01']);
  await page.fill('#node-filter', 'cli0');
  await page.locator('#nodes tbody tr[data-name=cli01]').waitFor();
  await page.fill('#node-filter', '');
  await page.locator('#node-count', { hasText: '(202 nodes)' }).waitFor();
  await shot(page, 'nodes');

  step('remove the CLI node from the page');
  page.once('dialog', (d) => d.accept());
  await page.fill('#node-filter', 'cli01');
  await page.locator('#nodes tbody tr[data-name=cli01] button', { hasText: 'Remove' }).click();
  await page.locator('#node-count', { hasText: '(0 nodes)' }).waitFor();
  await page.fill('#node-filter', '');

  step('networks, leases and images views');
  await page.click('nav button[data-view=networks]');
  const net = page.locator('#network-form');
  await net.locator('[name=name]').fill('rack9');
  await net.locator('[name=subnet]').fill('198.19.0.0/24');
  await net.locator('[name=range]').fill('198.19.0.100-198.19.0.50');
  await page.click('#network-submit');
  await page.locator('#message', { hasText: 'invalid for 198.19.0.0/24' }).waitFor();
  await net.locator('[name=range].bad').waitFor();
  await net.locator('[name=range]').fill('198.19.0.50-198.19.0.100');
  await page.click('#network-submit');
  await page.locator('#networks tbody tr', { hasText: 'rack9' }).waitFor();
  await page.locator('#networks tbody tr', { hasText: 'rack9' }).locator('button', { hasText: 'Edit' }).click();
  await net.locator('[name=gateway]').fill('198.19.0.1');
  await page.click('#network-submit');
  await page.locator('#networks tbody tr', { hasText: '198.19.0.1' }).waitFor();
  await shot(page, 'networks');
  await page.click('nav button[data-view=leases]');
  await page.locator('#view-leases').waitFor();
  await shot(page, 'leases');
  await page.click('nav button[data-view=images]');
  await page.locator('#view-images').waitFor();
  await shot(page, 'images');

  step('the pool view shows this member and the second one, alive, with what each serves');
  await page.click('nav button[data-view=pool]');
  const peer = page.locator(`#pool-members tbody tr[data-addr="${env('DROVER_POOL_PEER')}"]`);
  await page.locator('#pool-members tbody tr[data-state=alive] td', { hasText: 'alive (this member)' }).waitFor();
  await peer.locator('td.pool-alive').waitFor();
  // Its summary arrived: version and the services cell are filled (the second serves nothing).
  await peer.locator('td', { hasText: /^\d+\.\d+\.\d+$/ }).waitFor();
  const me = page.locator('#pool-members tbody tr', { hasText: 'alive (this member)' });
  await me.locator('td', { hasText: 'http' }).waitFor();
  await page.locator(`#pool-lag tbody tr[data-addr="${env('DROVER_POOL_PEER')}"]`).waitFor();
  assert.equal(await page.locator('#pool-members tbody tr').count(), 2);
  await shot(page, 'pool');

  step('log out');
  await page.click('#logout');
  await page.locator('#login-form').waitFor();
  assert.deepEqual(consoleErrors, [], 'no script errors on the page');
  console.log('web test: ok');
} finally {
  await browser.close();
}
