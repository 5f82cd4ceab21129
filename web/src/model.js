// The report model: reading it from the page, filling in what a trace did not record, and
// the figures every view derives from it (per-site activity in a time range, flame trees).
// Pure functions over plain objects; no DOM except readModel.

/**
 * Reads the model JSON from <script id="memcensus-data">. Returns {model} or {error} with a
 * sentence for the reader (an unfilled template is not valid JSON, so it lands here too).
 */
export function readModel(doc) {
  const el = doc.getElementById('memcensus-data');
  if (!el) return { error: 'This page holds no report data.' };
  let raw;
  try {
    raw = JSON.parse(el.textContent);
  } catch (e) {
    return { error: 'This page holds no report data: it is the report template, not a report.' };
  }
  if (!raw || typeof raw !== 'object') return { error: 'The report data is not an object.' };
  return { model: normalise(raw) };
}

const SUMMARY_KEYS = [
  'allocation_calls', 'free_calls', 'bytes_allocated', 'peak_live_bytes', 'peak_time', 'peak_rss',
  'leaked_blocks', 'leaked_bytes', 'realloc_calls', 'realloc_moves', 'realloc_bytes_copied',
  'temporary_allocations',
];
const SITE_KEYS = [
  'allocations', 'bytes', 'peak_bytes', 'leaked_blocks', 'leaked_bytes', 'temporary', 'copies',
  'copied_bytes',
];

function arr(v) {
  return Array.isArray(v) ? v : [];
}
function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}
// Figures a sampled trace cannot estimate (temporaries) come as null: kept null, so that
// views show them as unknown rather than as 0.
const NULLABLE_KEYS = new Set(['temporary_allocations', 'temporary']);
function figure(k, v) {
  return v === null && NULLABLE_KEYS.has(k) ? null : num(v);
}

/** Fills every part a trace may leave out, so views test emptiness instead of existence. */
export function normalise(raw) {
  const meta = raw.meta || {};
  const summary = {};
  for (const k of SUMMARY_KEYS) summary[k] = raw.summary ? figure(k, raw.summary[k]) : 0;
  summary.present = !!raw.summary;
  const tl = raw.timeline || {};
  const t = arr(tl.t);
  const series = (k) => {
    const s = arr(tl[k]);
    return t.length && s.length === t.length ? s : null;
  };
  const frames = arr(raw.frames).map((f) => ({
    function: (f && f.function) || '??',
    file: (f && f.file) || null,
    line: f && typeof f.line === 'number' ? f.line : null,
    object: (f && f.object) || '',
  }));
  const sites = arr(raw.sites).map((s, i) => {
    const site = { id: typeof s.id === 'number' ? s.id : i, frames: arr(s.frames), buckets: arr(s.buckets) };
    for (const k of SITE_KEYS) site[k] = figure(k, s[k]);
    return site;
  });
  // Only a trace of `run --free-stacks` has them: null otherwise (no view then).
  const freeSites = Array.isArray(raw.free_sites)
    ? raw.free_sites.map((s, i) => ({
      id: typeof s.id === 'number' ? s.id : i, frames: arr(s.frames), frees: num(s.frees), bytes: num(s.bytes),
    }))
    : null;
  const resident = raw.resident || {};
  return {
    meta: {
      command: arr(meta.command),
      pid: meta.pid ?? null,
      exit_status: meta.exit_status ?? null,
      duration: meta.duration ?? null,
      trace: meta.trace || '',
    },
    summary,
    timeline: {
      t,
      rss: series('rss'),
      rss_anon: series('rss_anon'),
      rss_file: series('rss_file'),
      heap_live: series('heap_live'),
    },
    frames,
    sites,
    free_sites: freeSites,
    threads: arr(raw.threads),
    snapshots: arr(raw.snapshots).filter((s) => s && s.layout && typeof s.layout === 'object'),
    resident: {
      at_peak: resident.at_peak && arr(resident.at_peak.parts).length ? resident.at_peak : null,
      at_exit: resident.at_exit && arr(resident.at_exit.parts).length ? resident.at_exit : null,
    },
    warnings: arr(raw.warnings).map(String),
  };
}

/** Width of the sites' time buckets: the smallest gap between distinct bucket times. */
export function bucketWidth(sites) {
  const times = new Set();
  for (const s of sites) for (const b of s.buckets) times.add(b[0]);
  const sorted = [...times].sort((a, b) => a - b);
  let w = Infinity;
  for (let i = 1; i < sorted.length; i++) w = Math.min(w, sorted[i] - sorted[i - 1]);
  return Number.isFinite(w) ? w : 0;
}

/**
 * A site's allocations and bytes within range [lo, hi] (seconds), from the buckets that overlap
 * it; the whole-run figures when range is null.
 */
export function activityIn(site, range, width) {
  if (!range) return { allocations: site.allocations, bytes: site.bytes };
  let allocations = 0;
  let bytes = 0;
  for (const [t, n, b] of site.buckets) {
    if (t + width >= range[0] && t <= range[1]) {
      allocations += n;
      bytes += b;
    }
  }
  return { allocations, bytes };
}

/** Whether the range is a proper interval. */
export function validRange(range) {
  return Array.isArray(range) && range.length === 2 && range[1] > range[0];
}

/** The frame that names a site: its allocating function (frames[0]). */
export function siteFrame(model, site) {
  return model.frames[site.frames[0]] || null;
}

/** "file:line" of the innermost frame of a site that has a source location, or its object. */
export function siteLocation(model, site) {
  for (const i of site.frames) {
    const f = model.frames[i];
    if (f && f.file) return f.line !== null ? `${f.file}:${f.line}` : f.file;
  }
  const f = siteFrame(model, site);
  return f ? f.object : '';
}

/**
 * Builds the flame tree (root = all, children outward from main to the allocating function)
 * with self values: value(site) lands on the site's allocating frame. Frames are merged by
 * frame index. Returns {root, nodeOfSite: Map(site id -> tree node)}; sites valued 0 are left out.
 */
export function flameTree(model, value) {
  const root = { name: 'all', frame: -1, value: 0, children: [], sites: [] };
  const nodeOfSite = new Map();
  for (const site of model.sites) {
    const v = value(site);
    if (!(v > 0)) continue;
    let node = root;
    for (let i = site.frames.length - 1; i >= 0; i--) {
      const fi = site.frames[i];
      if (!node.index) node.index = new Map();
      let child = node.index.get(fi);
      if (!child) {
        const f = model.frames[fi];
        child = { name: f ? f.function : '??', frame: fi, value: 0, children: [], sites: [] };
        node.index.set(fi, child);
        node.children.push(child);
      }
      node = child;
    }
    node.value += v;
    node.sites.push(site.id);
    nodeOfSite.set(site.id, node);
  }
  const stack = [root];
  while (stack.length) {
    const n = stack.pop();
    delete n.index;
    for (const c of n.children) stack.push(c);
  }
  return { root, nodeOfSite };
}

/** Sum of the values of a flame tree. */
export function treeTotal(node) {
  let total = 0;
  const stack = [node];
  while (stack.length) {
    const n = stack.pop();
    total += n.value;
    for (const c of n.children) stack.push(c);
  }
  return total;
}

/**
 * Groups layout regions for the atlas, in address order: each ELF object (its anonymous .bss
 * continuation included), then the heap, malloc arenas, thread stacks and their guards, other
 * anonymous mappings, other files, and the kernel's pages.
 */
export function groupRegions(layout) {
  const regions = arr(layout && layout.regions);
  const groups = new Map();
  let prev = null;
  for (const r of regions) {
    let key;
    let label;
    if (r.object) {
      key = `obj:${r.object}`;
      label = r.object;
    } else if (r.kind === 'bss' && prev && prev.object && prev.end === r.start) {
      key = `obj:${prev.object}`;
      label = prev.object;
    } else if (r.kind === 'heap') {
      key = 'heap';
      label = 'brk heap';
    } else if (r.kind === 'arena') {
      key = 'arena';
      label = 'malloc arenas';
    } else if (r.kind === 'stack' || r.kind === 'guard') {
      key = 'stack';
      label = 'thread stacks';
    } else if (r.kind === 'vdso' || r.kind === 'vvar' || r.kind === 'vsyscall') {
      key = 'kernel';
      label = 'kernel (vdso, vvar, vsyscall)';
    } else if (r.kind === 'file' || r.kind === 'shm') {
      key = `file:${r.path || r.kind}`;
      label = r.path || r.kind;
    } else {
      key = 'anon';
      label = 'anonymous mappings';
    }
    if (!groups.has(key)) groups.set(key, { key, label, regions: [] });
    groups.get(key).regions.push(r);
    prev = r.object || r.kind !== 'bss' ? r : prev;
  }
  return [...groups.values()];
}

/**
 * Kinds of resident memory shown at the snapshots on the timeline: each groups layout region
 * kinds (`kind` of `memcensus map --json` regions).
 */
export const RSS_KINDS = [
  { id: 'code', label: 'code', kinds: ['text'] },
  { id: 'static', label: 'static data', kinds: ['rodata', 'relro', 'data', 'bss'] },
  { id: 'heap', label: 'heap and arenas', kinds: ['heap', 'arena'] },
  { id: 'stacks', label: 'stacks', kinds: ['stack', 'guard'] },
  { id: 'anon', label: 'anonymous mmaps', kinds: ['anon'] },
  { id: 'file', label: 'file mappings', kinds: ['file'] },
  { id: 'shm', label: 'shared memory', kinds: ['shm'] },
  { id: 'kernel', label: 'kernel (vdso, vvar)', kinds: ['vdso', 'vvar', 'vsyscall'] },
  { id: 'other', label: 'other', kinds: ['other'] },
];

/**
 * Resident bytes by kind at each snapshot, in time order: [{label, time, rss, parts: {id:
 * bytes}}], `rss` being the sum of the snapshot's regions (every RSS_KINDS id is present; a
 * region of an unknown kind counts as other). Snapshots without a time are left out.
 */
export function rssByKind(snapshots) {
  const idOf = new Map();
  for (const k of RSS_KINDS) for (const kind of k.kinds) idOf.set(kind, k.id);
  const out = [];
  for (const s of arr(snapshots)) {
    if (typeof s.time !== 'number' || !s.layout) continue;
    const parts = {};
    for (const k of RSS_KINDS) parts[k.id] = 0;
    let rss = 0;
    for (const r of arr(s.layout.regions)) {
      const bytes = num(r.rss);
      parts[idOf.get(r.kind) || 'other'] += bytes;
      rss += bytes;
    }
    out.push({ label: String(s.label || ''), time: s.time, rss, parts });
  }
  return out.sort((a, b) => a.time - b.time);
}
