// What the browser scripts share: their settings from the environment, Chromium launched
// the way LAB.md found to work headless here, and screenshots into one directory.
import { chromium } from 'playwright-core';
import path from 'node:path';

/// The environment variable `k`; throws, naming the cargo test to run, when it is unset.
export const envOf = (test) => (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run through cargo test --test ${test})`);
  return v;
};

export const launch = (executablePath) => chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update'],
});

/// `shot(page, name)` saves a full-page screenshot as `dir/name.png`.
export const screenshots = (dir) => (page, name) =>
  page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
