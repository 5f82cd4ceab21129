// The bundled report page in headless Chromium (playwright-core): filled with the sample model
// the way `memcensus html` fills it, opened from a file:// URL. Checks that it loads without
// console errors, that every view draws, that flame frames zoom, that a timeline range filters
// the tables, that tables sort and move by keyboard, that it fits 1280x800, that empty models and
// an unfilled template say so, and that a 20,000-site model stays under 10 MB and opens in
// under 3 s. Screenshots go to --out. Exit 77 (skipped) only when chromium is not installed.
//
// Usage: node report_test.mjs --template report.html --web-dir web --sample sample_model.json --out DIR
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { makeLarge } from './model_gen.mjs';

const CHROMIUM = '/usr/bin/chromium';
const PLACEHOLDER = '__MEMCENSUS_DATA__';
const VIEWPORT = { width: 1280, height: 800 };
const MAX_BYTES = 10 * 1000 * 1000;
const MAX_LOAD_MS = 3000;
// Switching views on the large model is timed and printed; the bound only catches a pathological
// regression, so that a busy shared machine cannot make the test flaky.
const MAX_VIEW_MS = 10000;

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  for (const k of ['template', 'web-dir', 'sample', 'out']) {
    if (!out[k]) throw new Error(`missing --${k}`);
  }
  return out;
}

/** The page `memcensus html` writes: the placeholder replaced by the JSON, every "</" as "<\/". */
export function fill(template, model) {
  const parts = template.split(PLACEHOLDER);
  if (parts.length !== 2) throw new Error(`template holds ${parts.length - 1} placeholders, not 1`);
  const json = typeof model === 'string' ? model : JSON.stringify(model);
  return parts[0] + json.replaceAll('</', '<\\/') + parts[1];
}

const failures = [];
let passed = 0;
async function check(name, fn) {
  const t0 = performance.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name} (${Math.round(performance.now() - t0)} ms)`);
  } catch (e) {
    failures.push(name);
    console.log(`FAIL ${name}: ${e && e.message ? e.message.split('\n')[0] : e}`);
  }
}
function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** Opens html (written to dir/name) in a new page; collects console errors and page errors. */
async function open(context, dir, name, html) {
  const file = join(dir, name);
  writeFileSync(file, html);
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) errors.push(`network request: ${r.url()}`); });
  const t0 = Date.now();
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready]', { timeout: 10000 });
  return { page, errors, file, wallMs: Date.now() - t0 };
}

async function showTab(page, id) {
  await page.click(`#tab-${id}`);
  await page.waitForSelector(`#view-${id}:not([hidden])`);
}

const rowCount = (page, id) => page.locator(`#view-${id} table.data tbody tr`).count();

function expectedRowsInRange(model, lo, hi, width) {
  return model.sites.filter((s) => s.buckets.some(([t]) => t + width >= lo && t <= hi)).length;
}

async function sampleChecks(context, dir, sample, template, out) {
  const { page, errors } = await open(context, dir, 'sample.html', fill(template, sample));
  await page.setViewportSize(VIEWPORT);

  await check('sample: page is ready', async () => {
    assert(await page.getAttribute('body', 'data-ready') === '1', 'body[data-ready] is not 1');
  });

  await check('summary: key figures and what to look at first', async () => {
    await showTab(page, 'summary');
    assert(await page.locator('#view-summary .card').count() >= 6, 'fewer than 6 figure cards');
    const findings = await page.locator('#view-summary .finding').allTextContents();
    assert(findings.some((f) => f.includes('leaked')), `no leak finding in ${JSON.stringify(findings)}`);
    await page.screenshot({ path: join(out, 'report-summary.png') });
  });

  await check('timeline: chart drawn with the peak marked', async () => {
    await showTab(page, 'timeline');
    await page.waitForSelector('#view-timeline .uplot canvas');
    const inked = await page.evaluate(() => {
      const c = document.querySelector('#view-timeline .uplot canvas');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i]) n += 1;
      return n / (c.width * c.height);
    });
    assert(inked > 0.05, `only ${(inked * 100).toFixed(1)}% of the chart is drawn`);
    const legend = await page.locator('#view-timeline .u-legend').textContent();
    assert(legend.includes('Live heap') && legend.includes('RSS'), 'legend lacks series');
  });

  await check('timeline: RSS by kind at the snapshots, with legend, tooltip and table', async () => {
    await showTab(page, 'timeline');
    const measured = await page.locator('#view-timeline p.measured').textContent();
    assert(measured.includes('statm') && measured.includes('start, peak, exit'), `no note of what is measured: ${measured}`);
    const keys = await page.locator('#view-timeline .kind-legend .kind-key').allTextContents();
    for (const k of ['code', 'static data', 'stacks', 'heap and arenas']) assert(keys.some((x) => x.includes(k)), `legend lacks ${k}: ${keys}`);
    const rows = await page.locator('#view-timeline table.kinds-table tbody tr[data-kind]').count();
    assert(rows === keys.length, `${rows} kind rows, ${keys.length} legend keys`);
    const heads = await page.locator('#view-timeline table.kinds-table thead th').allTextContents();
    assert(heads.length === 4 && heads[2].startsWith('peak'), `columns ${heads}`);
    const over = await page.locator('#view-timeline .u-over').boundingBox();
    const tl = sample.timeline.t;
    const peak = sample.snapshots.find((x) => x.label === 'peak');
    const x = over.x + (over.width * (peak.time - tl[0])) / (tl[tl.length - 1] - tl[0]);
    // The bar's colours are on the canvas at the peak's time, near the bottom of the plot.
    const stackPixel = await page.evaluate(([cx, cy]) => {
      const c = document.querySelector('#view-timeline .uplot canvas');
      const r = c.getBoundingClientRect();
      const px = c.getContext('2d').getImageData(Math.round((cx - r.left) * devicePixelRatio), Math.round((cy - r.top) * devicePixelRatio), 1, 1).data;
      return [px[0], px[1], px[2], px[3]];
    }, [x, over.y + over.height - 3]);
    assert(stackPixel[3] > 0, 'nothing drawn at the peak snapshot');
    await page.mouse.move(x, over.y + over.height - 10);
    await page.waitForSelector('#view-timeline .kind-tip:not([hidden])', { timeout: 3000 });
    const tip = await page.locator('#view-timeline .kind-tip').textContent();
    assert(tip.includes('peak snapshot') && tip.includes('stacks') && tip.includes('code'), `tooltip: ${tip}`);
    await page.mouse.move(over.x + over.width * 0.7, over.y + 5);
    await page.waitForSelector('#view-timeline .kind-tip[hidden]', { state: 'attached', timeout: 3000 });
    await page.screenshot({ path: join(out, 'report-timeline-kinds.png') });
  });

  await check('flame graph: frames drawn', async () => {
    await showTab(page, 'flame');
    const n = await page.locator('#view-flame svg g.frame').count();
    assert(n > 10, `${n} frames`);
  });

  await check('flame graph: clicking a frame zooms into it', async () => {
    const svgWidth = await page.locator('#view-flame svg').evaluate((s) => s.getBoundingClientRect().width);
    const target = page.locator('#view-flame svg g.frame[name="build_index(std::vector<Record> const&)"]').first();
    const before = await target.locator('rect').evaluate((r) => r.getBoundingClientRect().width);
    assert(before < svgWidth * 0.8, `frame already ${before} of ${svgWidth}`);
    await target.click();
    await page.waitForFunction((w) => {
      const r = document.querySelector('#view-flame svg g.frame[name="build_index(std::vector<Record> const&)"] rect');
      return r && r.getBoundingClientRect().width > w * 0.95;
    }, svgWidth, { timeout: 5000 });
    assert(await page.locator('#view-flame svg g.frame.fade').count() >= 2, 'ancestors not faded');
    await page.screenshot({ path: join(out, 'report-flame-zoomed.png') });
  });

  await check('flame graph: search highlights, reset zooms out', async () => {
    await page.fill('#view-flame input.search', 'tokenize');
    await page.waitForFunction(() => /frames match/.test(document.querySelector('#view-flame .hover-line').textContent));
    await page.click('#view-flame button.reset');
    const svgWidth = await page.locator('#view-flame svg').evaluate((s) => s.getBoundingClientRect().width);
    await page.waitForFunction((w) => {
      const r = document.querySelector('#view-flame svg g.frame[name="build_index(std::vector<Record> const&)"] rect');
      return r && r.getBoundingClientRect().width < w * 0.8;
    }, svgWidth, { timeout: 5000 });
  });

  await check('flame graph: every measure draws', async () => {
    for (const m of ['allocations', 'peak', 'leaked', 'temporary', 'bytes']) {
      await page.click(`#view-flame [data-measure="${m}"]`);
      const n = await page.locator('#view-flame svg g.frame').count();
      assert(n >= 3, `${m}: ${n} frames`);
    }
  });

  await check('flame graph: keyboard moves between frames, Enter zooms, Escape resets', async () => {
    await showTab(page, 'flame');
    await page.click('#view-flame [data-measure="bytes"]');
    const svgWidth = await page.locator('#view-flame svg').evaluate((s) => s.getBoundingClientRect().width);
    await page.waitForFunction((w) => {
      const r = document.querySelector('#view-flame svg g.frame[name="all"] rect');
      return r && r.getBoundingClientRect().width > w * 0.95;
    }, svgWidth);  // frames grow into place after a redraw
    await page.focus('#view-flame .flame-box');
    const cursorWidth = () => page.locator('#view-flame svg g.frame.kbd-cursor rect').evaluate((r) => r.getBoundingClientRect().width);
    assert(await page.locator('#view-flame svg g.frame.kbd-cursor').count() === 1, 'no frame under the cursor after focus');
    assert((await page.locator('#view-flame .cursor-line').textContent()).startsWith('Frame: all'), 'cursor does not start at the root');
    let width = await cursorWidth();
    for (let i = 0; i < 12 && width >= svgWidth * 0.8; i++) {
      await page.keyboard.press('ArrowUp');
      width = await cursorWidth();
    }
    assert(width < svgWidth * 0.8, `no narrow frame reached by ArrowUp (${width} of ${svgWidth})`);
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowLeft');
    const name = await page.locator('#view-flame svg g.frame.kbd-cursor').getAttribute('name');
    await page.keyboard.press('Enter');
    await page.waitForFunction(([n, w]) => [...document.querySelectorAll('#view-flame svg g.frame')]
      .some((g) => g.getAttribute('name') === n && g.querySelector('rect').getBoundingClientRect().width > w * 0.95), [name, svgWidth], { timeout: 5000 });
    const said = await page.locator('#view-flame .chosen').textContent();
    assert(said.includes('Zoomed into'), `zoom not announced: "${said}" (${name})`);
    await page.keyboard.press('ArrowDown');
    assert(await page.locator('#view-flame svg g.frame.kbd-cursor').getAttribute('name') !== name, 'ArrowDown did not move to the caller');
    await page.keyboard.press('Escape');
    await page.waitForFunction(([n, w]) => [...document.querySelectorAll('#view-flame svg g.frame')]
      .filter((g) => g.getAttribute('name') === n).every((g) => g.querySelector('rect').getBoundingClientRect().width < w * 0.8), [name, svgWidth], { timeout: 5000 });
    assert((await page.locator('#view-flame .cursor-line').textContent()).startsWith('Frame: all'), 'Escape did not bring the cursor back to the root');
  });

  await check('threads: names, stack sizes and resident stack at each snapshot', async () => {
    await showTab(page, 'threads');
    const text = await page.locator('#view-threads table.data tbody').textContent();
    for (const t of sample.threads) assert(text.includes(t.name), `thread ${t.name} not shown`);
    assert(text.includes('peak 16 KiB') || text.includes('peak 16.0 KiB'), `no resident stack at the peak in ${text.slice(0, 200)}`);
  });

  await check('tables: every site, leak, copy and thread listed', async () => {
    const want = {
      sites: sample.sites.length,
      leaks: sample.sites.filter((s) => s.leaked_bytes > 0).length,
      copies: sample.sites.filter((s) => s.copies > 0).length,
      threads: sample.threads.length,
    };
    for (const [id, n] of Object.entries(want)) {
      await showTab(page, id);
      const got = await rowCount(page, id);
      assert(got === n && n > 0, `${id}: ${got} rows, want ${n}`);
    }
  });

  await check('tables: the filter keeps the sites whose function or file matches', async () => {
    await showTab(page, 'sites');
    const input = page.locator('#view-sites input.search');
    await input.fill('index.cc');
    const want = sample.sites.filter((s) => {
      const f = sample.frames[s.frames[0]];
      const loc = s.frames.map((i) => sample.frames[i]).find((x) => x.file);
      return f.function.toLowerCase().includes('index.cc') || (loc && loc.file.includes('index.cc'));
    }).length;
    const got = await rowCount(page, 'sites');
    assert(want > 0 && got === want, `${got} rows, want ${want}`);
    await input.fill('');
    assert(await rowCount(page, 'sites') === sample.sites.length, 'clearing the filter did not restore rows');
  });

  await check('tables: a header sorts, and again reverses', async () => {
    await showTab(page, 'sites');
    const header = page.locator('#view-sites thead th:nth-child(3)');
    assert((await header.textContent()).startsWith('Allocations'), 'third column is not Allocations');
    await header.locator('button').click();
    assert(await header.getAttribute('aria-sort') === 'descending', 'not descending');
    const first = await page.locator('#view-sites tbody tr:first-child td').nth(2).textContent();
    const max = Math.max(...sample.sites.map((s) => s.allocations));
    assert(first === max.toLocaleString('en-US'), `first row ${first}, want ${max}`);
    await header.locator('button').click();
    assert(await header.getAttribute('aria-sort') === 'ascending', 'not ascending');
    await header.locator('button').click();
  });

  await check('tables: keyboard moves between rows and Enter opens the flame graph', async () => {
    await showTab(page, 'sites');
    await page.locator('#view-sites tbody tr:first-child td.num').first().click();
    const focusedIndex = () => page.evaluate(() => {
      const tr = document.activeElement.closest('tr');
      return tr && tr.closest('#view-sites') ? tr.sectionRowIndex : -1;
    });
    assert(await focusedIndex() === 0, 'first row not focused by click');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    assert(await focusedIndex() === 2, `ArrowDown x2 gave row ${await focusedIndex()}`);
    await page.keyboard.press('End');
    assert(await focusedIndex() === sample.sites.length - 1, 'End did not reach the last row');
    await page.keyboard.press('Home');
    await page.keyboard.press('ArrowDown');
    assert(await focusedIndex() === 1, 'Home, ArrowDown did not give row 1');
    const selected = await page.locator('#view-sites tbody tr[aria-selected="true"]').count();
    assert(selected === 1, `${selected} rows selected`);
    const fn = await page.locator('#view-sites tbody tr:nth-child(2) button.link').textContent();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#view-flame:not([hidden])');
    await page.waitForFunction((name) => document.querySelector('#view-flame .chosen').textContent.includes(`Site #`)
      && document.querySelector('#view-flame .chosen').textContent.includes(name), fn);
  });

  await check('tables: a site leads to its flame-graph frame, zoomed', async () => {
    await showTab(page, 'leaks');
    const button = page.locator('#view-leaks tbody tr:first-child button.link');
    const fn = await button.textContent();
    await button.click();
    await page.waitForSelector('#view-flame:not([hidden])');
    const svgWidth = await page.locator('#view-flame svg').evaluate((s) => s.getBoundingClientRect().width);
    await page.waitForFunction(([name, w]) => [...document.querySelectorAll('#view-flame svg g.frame')]
      .some((g) => g.getAttribute('name') === name && g.querySelector('rect').getBoundingClientRect().width > w * 0.95), [fn, svgWidth]);
  });

  await check('timeline: dragging a range filters the tables, clearing restores them', async () => {
    await showTab(page, 'timeline');
    const box = await page.locator('#view-timeline .u-over').boundingBox();
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width * 0.05, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.15, y, { steps: 6 });
    await page.mouse.move(box.x + box.width * 0.2, y, { steps: 6 });
    await page.mouse.up();
    await page.waitForFunction(() => document.body.dataset.range);
    const [lo, hi] = (await page.getAttribute('body', 'data-range')).split(',').map(Number);
    assert(lo > 0.05 && hi < 0.6 && hi > lo, `range ${lo}..${hi}`);
    assert(await page.isVisible('#range-chip'), 'range chip hidden');
    const want = expectedRowsInRange(sample, lo, hi, 0.1);
    await showTab(page, 'sites');
    const got = await rowCount(page, 'sites');
    assert(want > 0 && want < sample.sites.length, `sample gives ${want} sites in range`);
    assert(got === want, `${got} rows in range, want ${want}`);
    await showTab(page, 'flame');
    const note = await page.locator('#view-flame p.hint').first().textContent();
    assert(note.includes('Counting only'), 'flame graph does not follow the range');
    await page.waitForFunction(() => {
      const r = document.querySelector('#view-flame svg g.frame[name="all"] rect');
      return r && r.getBoundingClientRect().width > 600;
    });
    await page.screenshot({ path: join(out, 'report-range-flame.png') });
    await showTab(page, 'timeline');
    await page.screenshot({ path: join(out, 'report-range-timeline.png') });
    await page.click('#range-clear');
    await showTab(page, 'sites');
    assert(await rowCount(page, 'sites') === sample.sites.length, 'clearing the range did not restore rows');
  });

  await check('timeline: a range typed in seconds filters the tables too', async () => {
    await showTab(page, 'timeline');
    await page.fill('#view-timeline input[aria-label="Range start in seconds"]', '1.0');
    await page.fill('#view-timeline input[aria-label="Range end in seconds"]', '1.25');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.body.dataset.range === '1,1.25');
    const want = expectedRowsInRange(sample, 1.0, 1.25, 0.1);
    await showTab(page, 'leaks');
    const got = await rowCount(page, 'leaks');
    const wantLeaks = sample.sites.filter((s) => s.leaked_bytes > 0 && s.buckets.some(([t]) => t + 0.1 >= 1.0 && t <= 1.25)).length;
    assert(want > 0 && wantLeaks > 0 && got === wantLeaks, `${got} leak rows in range, want ${wantLeaks}`);
    await page.click('#range-clear');
  });

  await check('layout atlas: regions drawn, hover details, size toggle, snapshot picker', async () => {
    await showTab(page, 'layout');
    const virtualCells = await page.locator('#view-layout .cell').count();
    assert(virtualCells >= 20, `${virtualCells} cells`);
    const hoverLargest = async (kind) => {
      const cells = page.locator(`#view-layout .cell[data-kind="${kind}"]`);
      const areas = await cells.evaluateAll((els) => els.map((e) => e.offsetWidth * e.offsetHeight));
      assert(areas.length && Math.max(...areas) > 0, `no visible ${kind} cell`);
      await cells.nth(areas.indexOf(Math.max(...areas))).hover();
    };
    await hoverLargest('text');
    const info = await page.locator('#view-layout .atlas-info').textContent();
    assert(info.includes('Resident') && info.includes('.text'), 'hover details lack figures or sections');
    await hoverLargest('bss');
    assert((await page.locator('#view-layout .atlas-info').textContent()).includes('Largest symbols'), 'no symbols on hover');
    await page.click('#view-layout [data-size="rss"]');
    const residentCells = await page.locator('#view-layout .cell').count();
    assert(residentCells < virtualCells && residentCells > 5, `resident ${residentCells} vs virtual ${virtualCells}`);
    const strip = await page.locator('#view-layout .strip-seg').count();
    assert(strip === sample.snapshots[1].layout.regions.length, `${strip} address-order segments`);
    await page.locator('#view-layout .strip-seg').last().hover();
    assert((await page.locator('#view-layout .atlas-info').textContent()).includes('vsyscall'), 'last segment is not vsyscall');
    const snaps = await page.locator('#view-layout [data-snapshot]').count();
    assert(snaps === 3, `${snaps} snapshots`);
    await page.click('#view-layout [data-snapshot="start"]');
    assert(await page.getAttribute('#view-layout [data-snapshot="start"]', 'aria-checked') === 'true', 'start not picked');
    await page.screenshot({ path: join(out, 'report-layout.png') });
  });

  await check('resident split: both moments drawn', async () => {
    await showTab(page, 'resident');
    const bars = await page.locator('#view-resident .bar').count();
    const segs = await page.locator('#view-resident .bar .seg').count();
    assert(bars === 2 && segs >= 10, `${bars} bars, ${segs} segments`);
  });

  await check('every view fits 1280x800 without horizontal scrolling', async () => {
    for (const id of ['summary', 'timeline', 'flame', 'sites', 'leaks', 'copies', 'threads', 'layout', 'resident']) {
      await showTab(page, id);
      const w = await page.evaluate(() => document.documentElement.scrollWidth);
      assert(w <= VIEWPORT.width, `${id} is ${w} px wide`);
    }
  });

  await check('the "</script>" in a function name stays text', async () => {
    assert(await page.locator('b:text("escaped")').count() === 0, 'markup from the data was parsed');
  });

  await check('sample: no console errors', async () => {
    assert(errors.length === 0, errors.join(' | '));
  });
  await page.close();
}

// Free sites (a trace of run --free-stacks): a tab of their own, rows sorted by bytes released,
// filtered by function; the sample, which has none, shows no such tab.
async function freeSitesChecks(context, dir, sample, template) {
  const without = await open(context, dir, 'no-frees.html', fill(template, sample));
  await check('free sites: no tab without them', async () => {
    assert(await without.page.locator('#tab-frees').count() === 0, 'a Free sites tab without free sites');
  });
  await without.page.close();
  const model = { ...sample, free_sites: [
    { id: 91, frames: [1, 0], frees: 5, bytes: 640 },
    { id: 92, frames: [2, 0], frees: 40, bytes: 1 << 20 },
    { id: 93, frames: [0], frees: 1, bytes: 0 },
  ] };
  const { page, errors } = await open(context, dir, 'frees.html', fill(template, model));
  await check('free sites: every row, the most bytes first, filtered by function', async () => {
    await showTab(page, 'frees');
    assert(await rowCount(page, 'frees') === 3, `${await rowCount(page, 'frees')} rows`);
    const first = await page.locator('#view-frees table.data tbody tr').first().textContent();
    assert(first.includes('1.00 MiB'), `first row: ${first}`);
    const fn = sample.frames[2].function;
    await page.fill('#view-frees input.search', fn);
    const n = await rowCount(page, 'frees');
    assert(n >= 1 && n < 3, `${n} rows match ${fn}`);
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= VIEWPORT.width, `frees is ${w} px wide`);
    assert(errors.length === 0, errors.join(' | '));
  });
  await page.close();
}

async function emptyChecks(context, dir, template) {
  const { page, errors } = await open(context, dir, 'empty.html', fill(template, { meta: { command: ['true'] } }));
  await check('empty model: every view says there is nothing, without errors', async () => {
    for (const id of ['summary', 'timeline', 'flame', 'sites', 'leaks', 'copies', 'threads', 'layout', 'resident']) {
      await showTab(page, id);
      const n = await page.locator(`#view-${id} .empty`).count();
      assert(n >= 1, `${id} has no explanation`);
    }
    assert(errors.length === 0, errors.join(' | '));
  });
  await page.close();

  const raw = await open(context, dir, 'template.html', template);
  await check('unfilled template: says it holds no data', async () => {
    assert(await raw.page.getAttribute('body', 'data-ready') === 'error', 'not marked as error');
    assert((await raw.page.locator('.empty').textContent()).includes('no report data'), 'no message');
  });
  await raw.page.close();
}

async function largeChecks(context, dir, template, layout, out) {
  const model = makeLarge(layout);
  const html = fill(template, model);
  const bytes = Buffer.byteLength(html);
  console.log(`large model: ${model.sites.length} sites, ${model.frames.length} frames, ${model.timeline.t.length} timeline points, ${model.summary.allocation_calls} allocations; page ${(bytes / 1e6).toFixed(2)} MB`);
  await check('large model: page under 10 MB', async () => {
    assert(bytes < MAX_BYTES, `${bytes} bytes`);
  });
  const { page, errors, wallMs } = await open(context, dir, 'large.html', html);
  await page.setViewportSize(VIEWPORT);
  await check('large model: opens in under 3 s', async () => {
    const readyMs = Number(await page.getAttribute('body', 'data-ready-ms'));
    console.log(`large model: ready ${readyMs} ms after navigation start (${wallMs} ms wall, file to ready)`);
    assert(readyMs > 0 && readyMs < MAX_LOAD_MS, `ready after ${readyMs} ms`);
  });
  await check('large model: flame graph, tables and range stay responsive', async () => {
    const timed = async (what, fn) => {
      const t0 = Date.now();
      await fn();
      const ms = Date.now() - t0;
      console.log(`large model: ${what} ${ms} ms`);
      assert(ms < MAX_VIEW_MS, `${what} took ${ms} ms`);
    };
    await timed('flame graph', async () => {
      await showTab(page, 'flame');
      await page.waitForSelector('#view-flame svg g.frame');
    });
    await timed('top sites', async () => {
      await showTab(page, 'sites');
      await page.waitForSelector('#view-sites tbody tr');
    });
    await timed('range over the timeline', async () => {
      await showTab(page, 'timeline');
      const box = await page.locator('#view-timeline .u-over').boundingBox();
      const y = box.y + box.height / 2;
      await page.mouse.move(box.x + box.width * 0.4, y);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.5, y, { steps: 4 });
      await page.mouse.up();
      await page.waitForFunction(() => document.body.dataset.range);
      await showTab(page, 'sites');
      await page.waitForSelector('#view-sites tbody tr');
    });
    await page.screenshot({ path: join(out, 'report-large-sites.png') });
    assert(errors.length === 0, errors.join(' | '));
  });
  await page.close();
}

async function main() {
  const a = args();
  if (!existsSync(CHROMIUM)) {
    console.log(`SKIPPED: ${CHROMIUM} is not installed (scripts/setup.sh installs Debian's chromium)`);
    process.exit(77);
  }
  const require = createRequire(resolve(a['web-dir'], 'package.json'));
  const { chromium } = require('playwright-core');
  const template = readFileSync(a.template, 'utf8');
  const sample = JSON.parse(readFileSync(a.sample, 'utf8'));
  mkdirSync(a.out, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'memcensus-web-profile-'));
  const pages = mkdtempSync(join(tmpdir(), 'memcensus-web-pages-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: VIEWPORT,
    timeout: 30000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(8000);
  try {
    await sampleChecks(context, pages, sample, template, a.out);
    await emptyChecks(context, pages, template);
    await freeSitesChecks(context, pages, sample, template);
    await largeChecks(context, pages, template, sample.snapshots[sample.snapshots.length - 1].layout, a.out);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    rmSync(pages, { recursive: true, force: true });
  }
  console.log(`screenshots in ${a.out}`);
  console.log(`${passed} passed, ${failures.length} failed`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
