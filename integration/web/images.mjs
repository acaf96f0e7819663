// The page's Images tab against a running drover (run by integration/web.rs with DROVER_URL,
// DROVER_PASSWORD, DROVER_VIEWER_PASSWORD and CHROMIUM; the test imported image `deb` twice,
// pinned node n1 to version 1 and left n2 on the latest): a viewer sees both versions, their
// sizes and nodes, and no Rollback button; the admin rolls back to version 1 from the page and
// sees version 3 appear as the latest. Prints "images web test: ok"; any failure throws.
import { envOf, launch, screenshots } from './lib.mjs';
import assert from 'node:assert/strict';

const env = envOf('web');
const step = (s) => console.log(`images web test: ${s}`);
const shot = screenshots(env('SCREENSHOTS'));
const row = (page, v) => page.locator(`table.image-versions[data-image=deb] tbody tr[data-version="${v}"]`);

async function openImages(user, password) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(env('DROVER_URL'));
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.locator('#nav').waitFor();
  await page.click('nav button[data-view=images]');
  await row(page, 1).waitFor();
  return page;
}

const errors = [];
const browser = await launch(env('CHROMIUM'));
try {
  step('a viewer sees two versions, who boots which, and no Rollback button');
  const viewer = await openImages('watcher', env('DROVER_VIEWER_PASSWORD'));
  assert.equal(await viewer.locator('table.image-versions[data-image=deb] tbody tr').count(), 2);
  const latest = await row(viewer, 2).innerText();
  assert.match(latest, /2 \(latest\)/);
  assert.match(latest, /\bn2\b/);
  assert.doesNotMatch(latest, /\bn1\b/);
  const first = await row(viewer, 1).innerText();
  assert.match(first, /\bn1\b/);
  assert.match(first, /import /);
  // SIZE, NEW and SHARED are byte figures.
  assert.match(first, /\d B|KiB|MiB/);
  assert.equal(await viewer.locator('table.image-versions button', { hasText: 'Rollback' }).count(), 1);
  assert.equal(await row(viewer, 1).locator('button', { hasText: 'Rollback' }).isVisible(), false);

  step('the admin rolls back to version 1 from the page');
  const page = await openImages('admin', env('DROVER_PASSWORD'));
  assert.equal(await row(page, 2).locator('button', { hasText: 'Rollback' }).count(), 0);
  page.on('dialog', (d) => d.accept());
  await row(page, 1).locator('button', { hasText: 'Rollback' }).click();
  await row(page, 3).waitFor();
  const third = await row(page, 3).innerText();
  assert.match(third, /3 \(latest\)/);
  assert.match(third, /rollback to 1/);
  assert.match(third, /\bn2\b/);
  await shot(page, 'images');
  assert.deepEqual(errors, []);
  step('ok');
} finally {
  await browser.close();
}
