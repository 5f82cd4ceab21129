// A report written by `memcensus html` from a real trace (the layout tour run under
// `memcensus run`), opened in headless Chromium: it loads without console errors or network
// requests, the header names the traced command, the summary shows its figures, the flame
// graph and top-sites table show the tour's own function, the layout atlas draws the recorded
// snapshots, the threads table names the tour's threads and the timeline shows stacks among the
// kinds at the snapshots. A screenshot goes to --out. Exit 77 (skipped) only without chromium.
//
// Usage: node generated_report_test.mjs --report report.html --web-dir web --out DIR
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';

const opts = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) opts[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!existsSync(CHROMIUM)) {
  console.log(`skipped: ${CHROMIUM} is not installed`);
  process.exit(77);
}
const { chromium } = createRequire(join(resolve(opts['web-dir']), 'package.json'))('playwright-core');

const failures = [];
function expect(cond, what) {
  if (!cond) failures.push(what);
}

const profile = mkdtempSync(join(tmpdir(), 'memcensus-report-'));
mkdirSync(opts.out, { recursive: true });
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('request', (r) => { if (!/^(file|data):/.test(r.url())) errors.push(`network: ${r.url()}`); });
  await page.goto(pathToFileURL(resolve(opts.report)).href, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready]', { timeout: 10000 });

  const header = await page.locator('body').textContent();
  expect(header.includes('layout_tour'), 'the traced command is not shown');

  await page.click('#tab-summary');
  expect(await page.locator('#view-summary .card').count() >= 6, 'summary: fewer than 6 cards');

  await page.click('#tab-flame');
  await page.waitForSelector('#view-flame:not([hidden])');
  // By calls: the worker threads' small blocks are 2 of the tour's 7 calls.
  await page.click('#view-flame [data-measure="allocations"]');
  const frames = await page.locator('#view-flame svg g.frame').count();
  expect(frames >= 3, `flame graph: ${frames} frames`);
  expect(await page.locator('#view-flame svg g.frame[name^="tour::worker"]').count() >= 1,
    'flame graph: no frame of tour::worker');

  await page.click('#tab-sites');
  await page.waitForSelector('#view-sites:not([hidden])');
  const sites = await page.locator('#view-sites table.data tbody').textContent();
  expect(/main|tour::worker/.test(sites), 'top sites: the tour\'s functions are missing');

  await page.click('#tab-layout');
  await page.waitForSelector('#view-layout:not([hidden])');
  expect(await page.locator('#view-layout .cell').count() > 10, 'layout atlas: too few regions drawn');
  expect(await page.locator('#view-layout .cell[data-kind="text"]').count() >= 1, 'layout atlas: no text region');
  await page.screenshot({ path: join(opts.out, 'generated-report-layout.png') });

  await page.click('#tab-threads');
  await page.waitForSelector('#view-threads:not([hidden])');
  const threads = await page.locator('#view-threads table.data tbody').textContent();
  expect(threads.includes('tour-small') && threads.includes('tour-large'),
    'threads: the recorded thread names are missing');

  await page.click('#tab-timeline');
  await page.waitForSelector('#view-timeline:not([hidden])');
  expect(await page.locator('#view-timeline table.kinds-table tr[data-kind="stacks"]').count() === 1,
    'timeline: no stacks among the kinds at the snapshots');

  expect(errors.length === 0, `console or network errors: ${errors.join('; ')}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (failures.length) {
  for (const f of failures) console.log(`FAIL ${f}`);
  process.exit(1);
}
console.log('generated report: all checks passed');
