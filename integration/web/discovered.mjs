// The page's Discovered tab against a running drover (run by integration/web.rs with
// DROVER_URL, DROVER_PASSWORD, DROVER_VIEWER_PASSWORD and CHROMIUM; the test put two waiting
// machines with the same DMI serial into the store): the viewer sees the machines but no
// Adopt form; the admin sees their inventory, the duplicate serial, adopts one by name and
// sees it leave the list and appear among the nodes. Prints "discovered web test: ok"; any
// failure throws.
import { envOf, launch, screenshots } from './lib.mjs';
import assert from 'node:assert/strict';

const env = envOf('web');
const step = (s) => console.log(`discovered web test: ${s}`);
const shot = screenshots(env('SCREENSHOTS'));
const A = '52:54:00:00:0e:01';
const B = '52:54:00:00:0e:02';

async function logIn(page, user, password) {
  await page.goto(env('DROVER_URL'));
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.locator('#nav').waitFor();
  await page.click('nav button[data-view=discovered]');
}

const browser = await launch(env('CHROMIUM'));
try {
  const errors = [];
  const viewer = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  viewer.setDefaultTimeout(15000);
  viewer.on('pageerror', (e) => errors.push(String(e)));
  step('a viewer sees the waiting machines, without the Adopt form');
  await logIn(viewer, 'watcher', env('DROVER_VIEWER_PASSWORD'));
  await viewer.locator(`#discovered tr[data-mac="${A}"]`).waitFor();
  assert.equal(await viewer.locator('#discovered tbody tr').count(), 2);
  assert.equal(await viewer.locator('form.adopt').first().isVisible(), false);

  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => errors.push(String(e)));
  step('the admin sees inventory, switch port and the duplicate serial');
  await logIn(page, 'admin', env('DROVER_PASSWORD'));
  const rowA = page.locator(`#discovered tr[data-mac="${A}"]`);
  await rowA.waitFor();
  const text = await rowA.innerText();
  for (const want of ['QEMU Standard PC', 'SER-1', '4 × Test CPU', '2 GiB', 'vda 8 GiB', 'rack1-sw1 Ethernet1/3']) {
    assert.ok(text.includes(want), `row of ${A} lacks ${want}: ${text}`);
  }
  await page.locator('#discovered-duplicates li', { hasText: 'SER-1' }).waitFor();
  assert.equal(await page.locator('#discovered-count').innerText(), '(2)');
  await shot(page, 'discovered');

  step('adopting one by name makes it a node');
  const form = page.locator(`form.adopt[data-mac="${A}"]`);
  assert.ok(await form.isVisible());
  await form.locator('[name=name]').fill('found01');
  await form.locator('button[type=submit]').click();
  await page.locator('#message', { hasText: `adopted ${A} as found01` }).waitFor();
  await page.locator(`#discovered tr[data-mac="${A}"]`).waitFor({ state: 'detached' });
  assert.equal(await page.locator('#discovered tbody tr').count(), 1);

  step('a taken name is refused with the API\'s reason');
  const formB = page.locator(`form.adopt[data-mac="${B}"]`);
  await formB.locator('[name=name]').fill('found01');
  await formB.locator('button[type=submit]').click();
  await page.locator('#message', { hasText: 'found01' }).waitFor();
  assert.equal(await page.locator('#discovered tbody tr').count(), 1);

  await page.click('nav button[data-view=nodes]');
  await page.locator('#nodes tbody tr', { hasText: 'found01' }).waitFor();
  assert.ok((await page.locator('#nodes tbody tr', { hasText: 'found01' }).innerText()).includes(A));
  assert.deepEqual(errors, []);
  console.log('discovered web test: ok');
} finally {
  await browser.close();
}
