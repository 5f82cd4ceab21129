// Model logic of the report front end (web/src/model.js), run with `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  normalise, bucketWidth, activityIn, flameTree, treeTotal, groupRegions, siteLocation, rssByKind, RSS_KINDS,
} from '../../web/src/model.js';

const here = dirname(fileURLToPath(import.meta.url));
const sample = JSON.parse(readFileSync(join(here, 'sample_model.json'), 'utf8'));

test('an empty model normalises to empty parts', () => {
  const m = normalise({});
  assert.deepEqual(m.sites, []);
  assert.deepEqual(m.timeline.t, []);
  assert.equal(m.timeline.rss, null);
  assert.deepEqual(m.snapshots, []);
  assert.equal(m.resident.at_peak, null);
  assert.equal(m.summary.present, false);
});

test('free sites: null without them (no view), else every row filled in', () => {
  assert.equal(normalise({}).free_sites, null);
  assert.equal(normalise({ free_sites: 'x' }).free_sites, null);
  const m = normalise({ frames: [{ function: 'drop_it', file: 'a.c', line: 3 }],
    free_sites: [{ id: 7, frames: [0], frees: 3, bytes: 96 }, { frames: null }] });
  assert.deepEqual(m.free_sites[0], { id: 7, frames: [0], frees: 3, bytes: 96 });
  assert.deepEqual(m.free_sites[1], { id: 1, frames: [], frees: 0, bytes: 0 });
  assert.equal(siteLocation(m, m.free_sites[0]), 'a.c:3');
});

test('temporaries a sampled trace cannot estimate stay null; other nulls read 0', () => {
  const m = normalise({
    summary: { allocation_calls: 10, temporary_allocations: null, leaked_bytes: null },
    sites: [{ id: 1, allocations: 3, temporary: null, copies: null }],
  });
  assert.equal(m.summary.temporary_allocations, null);
  assert.equal(m.summary.leaked_bytes, 0);
  assert.equal(m.sites[0].temporary, null);
  assert.equal(m.sites[0].copies, 0);
  assert.equal(normalise({ summary: { temporary_allocations: 7 } }).summary.temporary_allocations, 7);
});

test('a timeline series of the wrong length is dropped', () => {
  const m = normalise({ timeline: { t: [0, 1, 2], rss: [1, 2], heap_live: [1, 2, 3] } });
  assert.equal(m.timeline.rss, null);
  assert.deepEqual(m.timeline.heap_live, [1, 2, 3]);
});

test('bucket width is the smallest gap between bucket times', () => {
  const m = normalise(sample);
  assert.ok(Math.abs(bucketWidth(m.sites) - 0.1) < 1e-9);
  assert.equal(bucketWidth([]), 0);
});

test('activity in a range sums the overlapping buckets only', () => {
  const site = { allocations: 60, bytes: 600, buckets: [[0, 10, 100], [1, 20, 200], [2, 30, 300]] };
  assert.deepEqual(activityIn(site, null, 1), { allocations: 60, bytes: 600 });
  assert.deepEqual(activityIn(site, [1.2, 1.8], 1), { allocations: 20, bytes: 200 });
  assert.deepEqual(activityIn(site, [0.5, 1.5], 1), { allocations: 30, bytes: 300 });
  assert.deepEqual(activityIn(site, [5, 6], 1), { allocations: 0, bytes: 0 });
});

test('the flame tree merges common callers and puts each site on its allocating frame', () => {
  const m = normalise({
    frames: [{ function: 'main' }, { function: 'a' }, { function: 'b' }, { function: 'leaf' }],
    sites: [
      { id: 1, frames: [3, 1, 0], bytes: 10 },
      { id: 2, frames: [3, 2, 0], bytes: 5 },
      { id: 3, frames: [1, 0], bytes: 7 },
      { id: 4, frames: [2, 0], bytes: 0 },
    ],
  });
  const { root, nodeOfSite } = flameTree(m, (s) => s.bytes);
  assert.equal(root.children.length, 1);
  const main = root.children[0];
  assert.equal(main.name, 'main');
  assert.deepEqual(main.children.map((c) => c.name).sort(), ['a', 'b']);
  assert.equal(treeTotal(root), 22);
  assert.equal(nodeOfSite.get(3).name, 'a');
  assert.equal(nodeOfSite.get(3).value, 7);
  assert.equal(nodeOfSite.has(4), false);
  assert.equal(nodeOfSite.get(1).name, 'leaf');
});

test('regions are grouped by object, with an anonymous .bss joining its object', () => {
  const layout = sample.snapshots[2].layout;
  const groups = groupRegions(layout);
  const exe = groups.find((g) => g.label.endsWith('layout_tour'));
  assert.ok(exe.regions.some((r) => r.kind === 'bss' && r.path === null));
  const orphan = { regions: [
    { start: 0, end: 4096, kind: 'data', object: '/lib/x.so' },
    { start: 4096, end: 8192, kind: 'bss', object: null },
    { start: 8192, end: 12288, kind: 'anon', object: null },
  ] };
  assert.deepEqual(groupRegions(orphan).map((g) => [g.key, g.regions.length]), [['obj:/lib/x.so', 2], ['anon', 1]]);
  assert.ok(groups.some((g) => g.key === 'stack'));
  assert.equal(groups.reduce((a, g) => a + g.regions.length, 0), layout.regions.length);
});

test('a site is located at its innermost frame with a source file', () => {
  const m = normalise(sample);
  assert.equal(siteLocation(m, m.sites[0]), 'src/io.cc:19');
});

test('what to look at first: nothing for an empty model, leaks first when there are leaks', async () => {
  const { findings } = await import('../../web/src/summary.js');
  assert.deepEqual(findings(normalise({})), []);
  const list = findings(normalise(sample));
  assert.equal(list[0].view, 'leaks');
  assert.match(list[0].text, /leaked in 1,503 blocks/);
  assert.ok(list.some((f) => f.view === 'copies'));
  assert.ok(list.some((f) => f.text.startsWith('Warning: ')));
  const failed = findings(normalise({ meta: { exit_status: 3 } }));
  assert.match(failed[0].text, /exited with status 3/);
});

test('RSS by kind at the snapshots sums region rss by kind group, in time order', () => {
  const snaps = rssByKind([
    { label: 'exit', time: 2, layout: { regions: [
      { kind: 'text', rss: 100 }, { kind: 'stack', rss: 40 }, { kind: 'guard', rss: 0 },
      { kind: 'bss', rss: 8 }, { kind: 'data', rss: 4 }, { kind: 'mystery', rss: 1 },
    ] } },
    { label: 'start', time: 0, layout: { regions: [{ kind: 'heap', rss: 10 }, { kind: 'arena', rss: 5 }] } },
    { label: 'broken', layout: { regions: [] } },
  ]);
  assert.deepEqual(snaps.map((s) => s.label), ['start', 'exit']);
  assert.equal(snaps[0].parts.heap, 15);
  assert.equal(snaps[1].parts.code, 100);
  assert.equal(snaps[1].parts.stacks, 40);
  assert.equal(snaps[1].parts.static, 12);
  assert.equal(snaps[1].parts.other, 1);
  assert.equal(snaps[1].rss, 153);
  assert.deepEqual(Object.keys(snaps[1].parts), RSS_KINDS.map((k) => k.id));
  const real = rssByKind(normalise(sample).snapshots);
  assert.equal(real.length, 3);
  for (const s of real) {
    const regions = sample.snapshots.find((x) => x.label === s.label).layout.regions;
    assert.equal(s.rss, regions.reduce((a, r) => a + r.rss, 0));
    assert.ok(s.parts.code > 0 && s.parts.stacks > 0, s.label);
  }
});
