// Report models for the browser tests: a small realistic one (written to sample_model.json by
// `node model_gen.mjs sample LAYOUT.json OUT.json`) and a large one, the aggregate of a
// 100-million-event trace (20,000 sites, 5,000 timeline points), built in memory by makeLarge.
// Deterministic: the same arguments give the same bytes.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MiB = 1024 * 1024;
const round3 = (x) => Math.round(x * 1000) / 1000;

/** Copies a layout with its brk heap grown (or shrunk) to heapRss bytes, all resident. */
function layoutWithHeap(layout, heapRss, pid) {
  const copy = JSON.parse(JSON.stringify(layout));
  copy.pid = pid;
  const heap = copy.regions.find((r) => r.kind === 'heap');
  if (!heap) return copy;
  const bytes = Math.ceil(heapRss / 4096) * 4096;
  const dSize = bytes - heap.size;
  const dRss = bytes - heap.rss;
  heap.end = heap.start + bytes;
  heap.size = bytes;
  for (const k of ['rss', 'pss', 'uss', 'private_dirty', 'anonymous', 'referenced', 'pss_dirty']) heap[k] = bytes;
  copy.totals.size += dSize;
  for (const k of ['rss', 'pss', 'uss', 'private_dirty', 'anonymous', 'referenced', 'pss_dirty']) copy.totals[k] += dRss;
  if (copy.by_kind && copy.by_kind.heap) {
    copy.by_kind.heap.size = bytes;
    for (const k of ['rss', 'pss', 'uss']) copy.by_kind.heap[k] = bytes;
  }
  return copy;
}

const SAMPLE_FRAMES = [
  ['main', 'examples/alloc_tour.cc', 88, 'alloc_tour'],
  ['__libc_start_call_main', null, null, 'libc.so.6'],
  ['load_file(char const*)', 'src/io.cc', 19, 'alloc_tour'],
  ['parse_config(std::string_view)', 'src/config.cc', 41, 'alloc_tour'],
  ['std::vector<Record, std::allocator<Record> >::_M_realloc_insert<Record const&>', '/usr/include/c++/12/bits/vector.tcc', 440, 'alloc_tour'],
  ['Record::Record(std::string const&)', 'src/record.cc', 12, 'alloc_tour'],
  ['build_index(std::vector<Record> const&)', 'src/index.cc', 57, 'alloc_tour'],
  ['std::_Hashtable<std::string, Entry>::_M_rehash', '/usr/include/c++/12/bits/hashtable.h', 2563, 'alloc_tour'],
  ['leak_some_cache()', 'src/cache.cc', 23, 'alloc_tour'],
  ['worker_loop(int)', 'src/worker.cc', 70, 'alloc_tour'],
  ['std::thread::_State_impl<std::thread::_Invoker<std::tuple<void (*)(int), int> > >::_M_run()', '/usr/include/c++/12/bits/std_thread.h', 211, 'alloc_tour'],
  ['start_thread', null, null, 'libc.so.6'],
  ['render_report(Index const&)', 'src/report.cc', 140, 'alloc_tour'],
  ['std::__cxx11::basic_string<char>::_M_mutate', '/usr/include/c++/12/bits/basic_string.tcc', 326, 'alloc_tour'],
  ['tokenize(std::string_view)', 'src/lexer.cc', 33, 'alloc_tour'],
  ['Arena::grow(unsigned long)', 'src/arena.cc', 48, 'alloc_tour'],
  ['json_decode(char const*)', 'src/json.cc', 210, 'alloc_tour'],
  ['compress_block(Block&)', 'src/zstd_glue.cc', 77, 'alloc_tour'],
  ['ZSTD_createCCtx', null, null, 'libzstd.so.1'],
  ['format_row</script><b>escaped</b>(Row const&)', 'src/report.cc', 98, 'alloc_tour'],
  ['strdup', null, null, 'libc.so.6'],
  ['Index::insert(Record const&)', 'src/index.cc', 31, 'alloc_tour'],
];

// [frames (allocating first), phase start, phase end, allocations, bytes, peak, leaked blocks,
//  leaked bytes, temporary, copies, copied bytes]
const SAMPLE_SITES = [
  [[2, 0, 1], 0.02, 0.3, 40, 6 * MiB, 0, 0, 0, 0, 0, 0],
  [[13, 14, 3, 0, 1], 0.05, 0.55, 182000, 11 * MiB, 140 * 1024, 0, 0, 150000, 9000, 3 * MiB],
  [[4, 3, 0, 1], 0.1, 0.6, 17, 48 * MiB, 24 * MiB, 0, 0, 0, 16, 24 * MiB],
  [[5, 4, 3, 0, 1], 0.1, 0.6, 250000, 22 * MiB, 18 * MiB, 0, 0, 0, 0, 0],
  [[16, 3, 0, 1], 0.3, 0.6, 51000, 9 * MiB, 1 * MiB, 0, 0, 30000, 0, 0],
  [[7, 21, 6, 0, 1], 0.6, 1.35, 21, 32 * MiB, 16 * MiB, 0, 0, 0, 0, 0],
  [[21, 6, 0, 1], 0.6, 1.35, 250000, 30 * MiB, 30 * MiB, 0, 0, 0, 0, 0],
  [[15, 6, 0, 1], 0.7, 1.3, 24, 24 * MiB, 24 * MiB, 0, 0, 0, 0, 0],
  [[8, 0, 1], 1.0, 1.1, 1200, 3.2 * MiB, 3.2 * MiB, 1200, 3.2 * MiB, 0, 0, 0],
  [[20, 8, 0, 1], 1.0, 1.1, 300, 12 * 1024, 12 * 1024, 300, 12 * 1024, 0, 0, 0],
  [[17, 9, 10, 11], 0.5, 2.0, 4000, 512 * MiB, 2 * MiB, 0, 0, 3000, 0, 0],
  [[18, 17, 9, 10, 11], 0.5, 0.52, 3, 3 * 1245 * 1024, 0, 3, 3 * 1245 * 1024, 0, 0, 0],
  [[13, 12, 0, 1], 1.4, 2.0, 620000, 80 * MiB, 3 * MiB, 0, 0, 480000, 44000, 19 * MiB],
  [[19, 12, 0, 1], 1.4, 2.0, 90000, 7 * MiB, 600 * 1024, 0, 0, 88000, 0, 0],
  [[12, 0, 1], 1.4, 1.5, 2, 26 * MiB, 0, 0, 0, 0, 1, 13 * MiB],
];

function bucketsFor(rand, start, end, allocations, bytes, width) {
  const first = Math.floor(start / width);
  const last = Math.max(first, Math.ceil(end / width) - 1);
  const n = last - first + 1;
  const weights = Array.from({ length: n }, () => 0.5 + rand());
  const sum = weights.reduce((a, w) => a + w, 0);
  const out = [];
  let leftA = allocations;
  let leftB = bytes;
  for (let i = 0; i < n; i++) {
    const a = i === n - 1 ? leftA : Math.floor((allocations * weights[i]) / sum);
    const b = i === n - 1 ? leftB : Math.floor((bytes * weights[i]) / sum);
    leftA -= a;
    leftB -= b;
    if (a > 0) out.push([round3((first + i) * width), a, b]);
  }
  return out;
}

function heapCurve(t) {
  if (t < 0.6) return (t / 0.6) * 42 * MiB;
  if (t < 1.31) return 42 * MiB + ((t - 0.6) / 0.71) * 54 * MiB;
  if (t < 1.5) return 96 * MiB - ((t - 1.31) / 0.19) * 68 * MiB;
  if (t < 2.0) return 28 * MiB + Math.sin(t * 40) * 2 * MiB;
  return 28 * MiB - ((t - 2.0) / 0.4) * 24.8 * MiB;
}

export function makeSample(layout) {
  const rand = rng(5);
  const duration = 2.4;
  const t = [];
  const heap = [];
  const anon = [];
  const file = [];
  const rss = [];
  for (let i = 0; i <= 240; i++) {
    const x = round3((i * duration) / 240);
    const live = Math.max(0, Math.round(heapCurve(x)));
    const f = Math.round((3.1 * MiB + Math.min(x, 0.2) * 6 * MiB) / 4096) * 4096;
    const a = Math.round((live * 1.06 + 1.4 * MiB) / 4096) * 4096;
    t.push(x);
    heap.push(live);
    file.push(f);
    anon.push(a);
    rss.push(f + a);
  }
  const sites = SAMPLE_SITES.map(([frames, s, e, n, b, peak, lb, lbytes, tmp, cp, cpb], id) => ({
    id, frames, allocations: n, bytes: Math.round(b), peak_bytes: Math.round(peak), leaked_blocks: lb,
    leaked_bytes: Math.round(lbytes), temporary: tmp, copies: cp, copied_bytes: Math.round(cpb),
    buckets: bucketsFor(rand, s, e, n, Math.round(b), 0.1),
  }));
  const sum = (k) => sites.reduce((a, s) => a + s[k], 0);
  const peakRss = Math.max(...rss);
  return {
    meta: { command: ['build/release/examples/alloc_tour', '--records', '250000'], pid: 41872, exit_status: 0, duration, trace: 'alloc_tour.41872.mctrace' },
    summary: {
      allocation_calls: sum('allocations'), free_calls: sum('allocations') - sum('leaked_blocks'), bytes_allocated: sum('bytes'),
      peak_live_bytes: 96 * MiB, peak_time: 1.31, peak_rss: peakRss, leaked_blocks: sum('leaked_blocks'), leaked_bytes: sum('leaked_bytes'),
      realloc_calls: 61000, realloc_moves: sum('copies'), realloc_bytes_copied: sum('copied_bytes'), temporary_allocations: sum('temporary'),
    },
    timeline: { t, rss, rss_anon: anon, rss_file: file, heap_live: heap },
    frames: SAMPLE_FRAMES.map(([fn, f, line, object]) => ({ function: fn, file: f, line, object })),
    sites,
    threads: [
      { tid: 41872, name: 'alloc_tour', allocations: 1462000, bytes: 230 * MiB, stack_size: 8 * MiB, stack_rss: 48 * 1024 },
      { tid: 41873, name: 'compress-0', allocations: 2100, bytes: 262 * MiB, stack_size: 8 * MiB, stack_rss: 16 * 1024 },
      { tid: 41874, name: 'compress-1', allocations: 1903, bytes: 250 * MiB + 3 * 1245 * 1024, stack_size: 8 * MiB, stack_rss: 20 * 1024 },
      { tid: 41875, name: 'watchdog', allocations: 0, bytes: 0, stack_size: 256 * 1024, stack_rss: null },
    ],
    snapshots: [
      { label: 'start', time: 0.002, layout: layoutWithHeap(layout, 132 * 1024, 41872) },
      { label: 'peak', time: 1.31, layout: layoutWithHeap(layout, 101 * MiB, 41872) },
      { label: 'exit', time: 2.4, layout },
    ],
    resident: {
      at_peak: { time: 1.31, rss: peakRss, parts: [
        { what: 'code (text)', bytes: 1146880 }, { what: 'static data', bytes: 450560 }, { what: 'thread stacks', bytes: 106496 },
        { what: 'live heap', bytes: 96 * MiB }, { what: 'allocator overhead and retained free memory', bytes: 5 * MiB + 770048 },
        { what: 'other anonymous mmaps', bytes: 1060864 }, { what: 'file mappings', bytes: 2 * MiB + 94208 } ] },
      at_exit: { time: 2.4, rss: rss[rss.length - 1], parts: [
        { what: 'code (text)', bytes: 1146880 }, { what: 'static data', bytes: 450560 }, { what: 'thread stacks', bytes: 32768 },
        { what: 'live heap', bytes: Math.round(3.2 * MiB + 3 * 1245 * 1024 + 12 * 1024) }, { what: 'allocator overhead and retained free memory', bytes: 1 * MiB },
        { what: 'other anonymous mmaps', bytes: 1060864 }, { what: 'file mappings', bytes: 2 * MiB } ] },
    },
    warnings: ['2 frames in libzstd.so.1 have no symbols (stripped binary): shown by address'],
  };
}

/** The aggregate of a long trace: `sites` sites over `points` timeline samples. */
export function makeLarge(layout, { sites: nSites = 20000, points = 5000, seed = 7 } = {}) {
  const rand = rng(seed);
  const duration = 300;
  const width = 1;
  const levels = 18;
  const frames = [{ function: 'main', file: 'src/main.cc', line: 10, object: 'bigapp' }];
  const levelFrames = [[0]];
  for (let l = 1; l < levels; l++) {
    const size = Math.min(1100, 4 * 3 ** l);
    const ids = [];
    for (let i = 0; i < size; i++) {
      ids.push(frames.length);
      const ns = `mod${l}_${i % 37}`;
      frames.push({ function: `${ns}::Component${i}::handle_${l}(Request const&, Context&)`, file: `src/${ns}/component_${i}.cc`, line: 1 + ((i * 7919) % 900), object: i % 11 === 0 ? `libplugin${i % 5}.so` : 'bigapp' });
    }
    levelFrames.push(ids);
  }
  const sites = [];
  let total = { allocations: 0, bytes: 0, peak: 0, leaked_blocks: 0, leaked_bytes: 0, temporary: 0, copies: 0, copied: 0 };
  for (let id = 0; id < nSites; id++) {
    const depth = 6 + Math.floor(rand() * 12);
    const path = [0];
    let key = 0;
    for (let l = 1; l < depth; l++) {
      const choices = levelFrames[l];
      key = (key * 31 + Math.floor(rand() * 3)) % choices.length;
      path.push(choices[(key + Math.floor(rand() * rand() * choices.length)) % choices.length]);
    }
    path.reverse();
    const scale = 1 / (1 + id / 50);
    const allocations = Math.max(1, Math.round(170000 * scale * (0.5 + rand())));
    const bytes = Math.round(allocations * (16 + rand() * 400));
    const start = Math.floor(rand() * 290);
    const span = 1 + Math.floor(rand() * 10);
    const buckets = bucketsFor(rand, start, start + span, allocations, bytes, width);
    const leaked = rand() < 0.05 ? Math.max(1, Math.floor(allocations * 0.01)) : 0;
    const copies = rand() < 0.1 ? Math.floor(allocations * 0.2) : 0;
    const site = {
      id, frames: path, allocations, bytes, peak_bytes: Math.round(bytes * rand() * 0.05), leaked_blocks: leaked,
      leaked_bytes: Math.round((leaked * bytes) / allocations), temporary: Math.floor(allocations * rand() * 0.3),
      copies, copied_bytes: copies * 512, buckets,
    };
    total.allocations += allocations;
    total.bytes += bytes;
    total.peak += site.peak_bytes;
    total.leaked_blocks += leaked;
    total.leaked_bytes += site.leaked_bytes;
    total.temporary += site.temporary;
    total.copies += copies;
    total.copied += site.copied_bytes;
    sites.push(site);
  }
  const tl = { t: [], rss: [], rss_anon: [], rss_file: [], heap_live: [] };
  for (let i = 0; i < points; i++) {
    const x = round3((i * duration) / (points - 1));
    const live = Math.round(total.peak * (0.3 + 0.7 * Math.sin((Math.PI * x) / duration)));
    const f = 40 * MiB;
    const a = Math.round(live * 1.1 + 12 * MiB);
    tl.t.push(x);
    tl.heap_live.push(live);
    tl.rss_file.push(f);
    tl.rss_anon.push(a);
    tl.rss.push(a + f);
  }
  const threads = Array.from({ length: 64 }, (_, i) => ({ tid: 9000 + i, name: i ? `worker-${i}` : 'bigapp', allocations: Math.floor(total.allocations / 64), bytes: Math.floor(total.bytes / 64), stack_size: 8 * MiB, stack_rss: 64 * 1024, stack_rss_at: { start: i ? null : 40960, peak: 64 * 1024, exit: 64 * 1024 } }));
  const peakRss = Math.max(...tl.rss);
  return {
    meta: { command: ['bigapp', '--serve', '--requests', '1000000'], pid: 9000, exit_status: 0, duration, trace: 'bigapp.9000.mctrace' },
    summary: {
      allocation_calls: total.allocations, free_calls: total.allocations - total.leaked_blocks, bytes_allocated: total.bytes,
      peak_live_bytes: total.peak, peak_time: 150, peak_rss: peakRss, leaked_blocks: total.leaked_blocks, leaked_bytes: total.leaked_bytes,
      realloc_calls: total.copies * 3, realloc_moves: total.copies, realloc_bytes_copied: total.copied, temporary_allocations: total.temporary,
    },
    timeline: tl,
    frames,
    sites,
    threads,
    snapshots: [
      { label: 'start', time: 0.01, layout },
      { label: 'peak', time: 150, layout: layoutWithHeap(layout, total.peak, 9000) },
      { label: 'exit', time: duration, layout },
    ],
    resident: {
      at_peak: { time: 150, rss: peakRss, parts: [{ what: 'live heap', bytes: total.peak }, { what: 'file mappings', bytes: 40 * MiB }, { what: 'allocator overhead and retained free memory', bytes: Math.round(total.peak * 0.1) }] },
      at_exit: { time: duration, rss: tl.rss[tl.rss.length - 1], parts: [{ what: 'live heap', bytes: total.leaked_bytes }, { what: 'file mappings', bytes: 40 * MiB }] },
    },
    warnings: [],
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [what, layoutPath, out] = process.argv.slice(2);
  if (what !== 'sample' || !layoutPath || !out) {
    console.error('usage: node model_gen.mjs sample LAYOUT.json OUT.json');
    process.exit(2);
  }
  const layout = JSON.parse(readFileSync(layoutPath, 'utf8'));
  writeFileSync(out, `${JSON.stringify(makeSample(layout), null, 1)}\n`);
}
