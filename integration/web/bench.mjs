// Page-load bench (not a test): how fast drover's page shows its views with many nodes.
// Run by bench/web-page.sh, which starts drover and passes DROVER_URL, DROVER_PASSWORD,
// CHROMIUM and RUNS. Times are taken inside the page (Navigation Timing and the
// `drover:overview` / `drover:nodes` marks app.js sets once a view is drawn), so the
// automation's own round trips are not counted. Prints one JSON object of medians (ms).
import { launch } from './lib.mjs';

const url = process.env.DROVER_URL;
const runs = Number(process.env.RUNS || 10);
const browser = await launch(process.env.CHROMIUM);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return Math.round(s[Math.floor(s.length / 2)]); };
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.fill('#login-password', process.env.DROVER_PASSWORD);
  await page.click('#login-submit');
  await page.locator('#services tbody tr').first().waitFor();
  const times = { dom_content_loaded: [], load: [], overview_shown: [], nodes_shown: [] };
  for (let i = 0; i < runs; i++) {
    await page.goto(url);
    await page.locator('#services tbody tr').first().waitFor();
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType('navigation')[0];
      const o = performance.getEntriesByName('drover:overview')[0];
      return { dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, overview: o ? o.startTime : NaN };
    });
    times.dom_content_loaded.push(nav.dcl);
    times.load.push(nav.load);
    times.overview_shown.push(nav.overview);
    times.nodes_shown.push(await page.evaluate(() => new Promise((resolve) => {
      performance.clearMarks('drover:nodes');
      const t0 = performance.now();
      new PerformanceObserver((list, obs) => {
        const m = list.getEntriesByName('drover:nodes')[0];
        if (m) { obs.disconnect(); resolve(m.startTime - t0); }
      }).observe({ entryTypes: ['mark'] });
      document.querySelector('nav button[data-view=nodes]').click();
    })));
  }
  const out = {};
  for (const [k, v] of Object.entries(times)) out[k] = median(v);
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
