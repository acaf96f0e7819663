// Watches a real QEMU node network-boot through drover, from drover's page in headless
// Chromium (playwright-core). Run by qemu-tests/web.rs inside the lab's network namespace
// (Chromium reaches drover on the lab bridge), with DROVER_URL, DROVER_USER, DROVER_PASSWORD,
// NODE (the node's name), STAGES (the stages its boot must show, comma-separated, in order),
// BOOT_TIMEOUT_MS, CHROMIUM and SCREENSHOTS.
//
// Protocol with the Rust side: after logging in and opening the node's timeline it prints
// "web boot: watching", and the test starts the VM. It then polls the page (not the API) until
// the timeline says "up", records every distinct timeline it showed, saves screenshots of the
// main views and prints "web boot: ok". Any failure throws and exits non-zero.
import { envOf, launch, screenshots } from './lib.mjs';
import assert from 'node:assert/strict';

const env = envOf('qemu_web');
const url = env('DROVER_URL');
const node = env('NODE');
const stages = env('STAGES').split(',');
const bootTimeout = Number(env('BOOT_TIMEOUT_MS'));
const shots = env('SCREENSHOTS');
const shot = screenshots(shots);
const step = (s) => console.log(`web boot: ${s}`);

const browser = await launch(env('CHROMIUM'));
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(20000);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  step('log in');
  await page.goto(url);
  await page.locator('#login-form').waitFor();
  await page.fill('#login-user', env('DROVER_USER'));
  await page.fill('#login-password', env('DROVER_PASSWORD'));
  await page.click('#login-submit');
  await page.locator('#services tbody tr', { hasText: 'dhcp' }).waitFor();
  await page.locator('#live.on').waitFor();

  step(`open the timeline of ${node}, which has not booted yet`);
  await page.click('nav button[data-view=nodes]');
  const row = page.locator(`#nodes tbody tr[data-name="${node}"]`);
  await row.locator('td.node-unknown').waitFor();
  await row.locator('button', { hasText: 'Timeline' }).click();
  await page.locator('#timeline-state', { hasText: 'unknown' }).waitFor();
  console.log('web boot: watching');

  // What the page shows, as "state: stage stage ...", each time it changes.
  const seen = [];
  const deadline = Date.now() + bootTimeout;
  let shotBooting = false;
  for (;;) {
    const state = (await page.locator('#timeline-state').textContent()).trim();
    const shown = await page.$$eval('#timeline-events tbody tr', (rows) => rows.map((r) => r.dataset.stage));
    const now = `${state}: ${shown.join(' ')}`;
    if (seen[seen.length - 1] !== now) {
      seen.push(now);
      step(`page shows ${now}`);
    }
    if (state === 'booting' && shown.includes('kernel') && !shotBooting) {
      await shot(page, 'timeline-booting');
      shotBooting = true;
    }
    if (state === 'up' || state === 'failed') break;
    if (Date.now() > deadline) throw new Error(`${node} did not come up; the page showed:\n${seen.join('\n')}`);
    await page.waitForTimeout(250);
  }
  assert.ok(seen[seen.length - 1].startsWith('up: '), `the boot failed:\n${seen.join('\n')}`);
  // The page moved live through the boot: from nothing, through "booting" (how many
  // intermediate timelines it shows depends on when its live updates land), to "up".
  assert.equal(seen[0], 'unknown: ', 'the node had no events before the VM started');
  assert.ok(seen.some((s) => s.startsWith('booting: ')), `the page never showed the boot in progress:\n${seen.join('\n')}`);
  const final = await page.$$eval('#timeline-events tbody tr', (rows) => rows.map((r) => r.dataset.stage));
  assert.deepEqual(final, stages, 'the timeline of the boot');
  const sources = await page.$$eval('#timeline-events tbody tr td:nth-child(4)', (cells) => cells.map((c) => c.textContent));
  assert.equal(sources[0], 'dhcp', 'the boot starts with the DHCP offer');
  assert.equal(sources[sources.length - 1], 'agent', 'the agent reports ready');
  await row.locator('td.node-up').waitFor();
  await shot(page, 'timeline-up');

  step('the main views, with the node up');
  await page.click('#timeline-close');
  await shot(page, 'nodes');
  await page.click('nav button[data-view=leases]');
  await page.locator('#leases tbody tr', { hasText: node }).waitFor();
  await shot(page, 'leases');
  await page.click('nav button[data-view=images]');
  await page.locator('#images tbody tr').first().waitFor();
  await shot(page, 'images');
  await page.click('nav button[data-view=overview]');
  await page.locator('#services tbody tr', { hasText: 'dhcp' }).waitFor();
  await shot(page, 'overview');

  assert.deepEqual(pageErrors, [], 'no script errors on the page');
  console.log('web boot: ok');
} finally {
  await browser.close();
}
