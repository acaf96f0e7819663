// The page's Settings tab against a running drover (run by integration/settings.rs inside the
// server's network namespace, with DROVER_URL, DROVER_PASSWORD, DROVER_DNS (the address DNS
// serves on), DROVER_ADD_IFACE (an interface to add) and CHROMIUM): turns DNS off and on and
// sees `dig` follow, is refused a bad value naming its key, and adds an interface (the test
// then sees DHCP answer on it), and sets a key that takes a restart, which the page then says
// is pending; with DROVER_AFTER_RESTART (run again once the test restarted drover) it checks
// that the notice is gone. Prints "settings web test: ok"; any failure throws.
import { envOf, launch } from './lib.mjs';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';

const env = envOf('settings');
const step = (s) => console.log(`settings web test: ${s}`);
const dns = env('DROVER_DNS');

// Whether DNS answers on the served address at all (any status counts).
function dnsAnswers() {
  try {
    execFileSync('dig', [`@${dns}`, '+time=1', '+tries=1', 'drover.cluster'], { stdio: 'pipe' });
    return true;
  } catch (e) {
    return false;
  }
}

async function until(what, cond) {
  for (let i = 0; i < 40; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting until ${what}`);
}

const browser = await launch(env('CHROMIUM'));
// Run again after the test restarted drover (DROVER_AFTER_RESTART): the notice is gone.
const afterRestart = !!process.env.DROVER_AFTER_RESTART;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(15000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(env('DROVER_URL'));
  await page.fill('#login-password', env('DROVER_PASSWORD'));
  await page.click('#login-submit');
  if (afterRestart) {
    await page.click('nav button[data-view=settings]');
    await page.locator('#settings tbody tr[data-key="nfs.grace-secs"]').filter({ hasText: '30' }).waitFor();
    assert.ok(!(await page.locator('#settings-restart').isVisible()), 'the restart notice outlived the restart');
    console.log('settings web test: ok (after the restart)');
    process.exit(0);
  }
  const dnsRow = page.locator('#services tbody tr', { hasText: 'dns' });
  await dnsRow.locator('.state-on').waitFor();
  step('the first-run guide shows (no image, no node yet)');
  await page.locator('#first-run li[data-step=network].done').waitFor();
  assert.ok(await page.locator('#first-run').isVisible());
  assert.ok(dnsAnswers(), 'DNS answers at start');

  step('turn DNS off from the Settings tab');
  await page.click('nav button[data-view=settings]');
  const row = (key) => page.locator(`#settings tbody tr[data-key="${key}"]`);
  await row('dns.enabled').filter({ hasText: 'true' }).waitFor();
  const form = page.locator('#setting-form');
  await form.locator('[name=key]').fill('dns.enabled');
  await form.locator('[name=value]').fill('false');
  await page.click('#setting-submit');
  await page.locator('#message', { hasText: 'applied live' }).waitFor();
  await row('dns.enabled').filter({ hasText: 'pool' }).waitFor();
  await until('DNS stops answering', () => !dnsAnswers());
  await page.click('nav button[data-view=overview]');
  await dnsRow.locator('.state-off').waitFor();

  step('turn it on again (Reset: back to the file\'s value)');
  await page.click('nav button[data-view=settings]');
  await row('dns.enabled').locator('button', { hasText: 'Reset' }).click();
  await page.locator('#message', { hasText: 'back to the file' }).waitFor();
  await until('DNS answers again', dnsAnswers);

  step('a bad value is refused naming its key');
  await form.locator('[name=key]').fill('dns.port');
  await form.locator('[name=value]').fill('0');
  await page.click('#setting-submit');
  await page.locator('#message', { hasText: 'dns.port' }).waitFor();
  await form.locator('[name=value].bad').waitFor();
  await row('dns.port').filter({ hasText: 'default' }).waitFor();

  step('add an interface');
  const iface = env('DROVER_ADD_IFACE');
  const current = JSON.parse(await row('interfaces').locator('td').nth(1).textContent());
  await form.locator('[name=key]').fill('interfaces');
  await form.locator('[name=value]').fill(JSON.stringify([...current, iface]));
  await page.click('#setting-submit');
  await page.locator('#message', { hasText: 'set for this member' }).waitFor();
  await row('interfaces').filter({ hasText: iface }).filter({ hasText: 'member' }).waitFor();
  step('a setting that takes a restart: the page says it is pending');
  assert.ok(!(await page.locator('#settings-restart').isVisible()), 'a restart notice before any such change');
  await form.locator('[name=key]').fill('nfs.grace-secs');
  await form.locator('[name=value]').fill('30');
  await page.click('#setting-submit');
  await page.locator('#message', { hasText: 'next restart' }).waitFor();
  await page.locator('#settings-restart', { hasText: 'nfs.grace-secs' }).waitFor();
  // It stays across a reload: the server, not the page, knows what it runs with.
  await page.reload();
  await page.click('nav button[data-view=settings]');
  await page.locator('#settings-restart', { hasText: 'Restart pending: nfs.grace-secs' }).waitFor();
  assert.deepEqual(errors, [], 'errors on the page');
  console.log('settings web test: ok');
} finally {
  await browser.close();
}
