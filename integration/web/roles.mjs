// The page reflects the signed-in role: it offers admins every change and the audit log,
// operators the power buttons only, viewers nothing that changes anything. Run by integration/access.rs with
// DROVER_URL, DROVER_PASSWORD (of users admin, op and view) and CHROMIUM. Prints
// "roles test: ok"; any failure throws.
import { envOf, launch } from './lib.mjs';
import assert from 'node:assert/strict';

const env = envOf('access');
const url = env('DROVER_URL');
const browser = await launch(env('CHROMIUM'));
try {
  // Whether each element would show (its own display, whatever view is open).
  const shown = (page, sel) => page.$eval(sel, (e) => getComputedStyle(e).display !== 'none');
  for (const [user, role, canAdmin, canPower] of [
    ['admin', 'admin', true, true], ['op', 'operator', false, true], ['view', 'viewer', false, false],
  ]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    await page.goto(url);
    await page.fill('#login-user', user);
    await page.fill('#login-password', env('DROVER_PASSWORD'));
    await page.click('#login-submit');
    await page.locator('#user', { hasText: `${user} (${role})` }).waitFor();
    await page.click('nav button[data-view=nodes]');
    await page.locator('#nodes tbody tr[data-name=n1]').waitFor();
    assert.equal(await shown(page, '#node-form'), canAdmin, `${role}: the add-node form`);
    assert.equal(await shown(page, '#csv-import'), canAdmin, `${role}: the CSV import`);
    assert.equal(await shown(page, '#power-actions'), canPower, `${role}: the power buttons`);
    const edit = page.locator('#nodes tbody tr[data-name=n1] button', { hasText: 'Remove' });
    assert.equal(await edit.isVisible(), canAdmin, `${role}: a node's Remove button`);
    assert.equal(await shown(page, 'nav button[data-view=audit]'), canAdmin, `${role}: the audit view`);
    if (canAdmin) {
      // The audit view lists the CLI's changes (the test added users op and view).
      await page.click('nav button[data-view=audit]');
      await page.locator('#audit tbody tr', { hasText: 'user add view' }).waitFor();
    }
    console.log(`roles test: ${role} sees what it may do`);
    await context.close();
  }
  console.log('roles test: ok');
} finally {
  await browser.close();
}
