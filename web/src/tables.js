// Table views: top allocation sites, leaks, realloc copies (all follow the time range and lead
// to the flame graph), and thread stacks.
import { h, emptyNote } from './dom.js';
import { sortableTable } from './table.js';
import { activityIn, siteFrame, siteLocation } from './model.js';
import * as fmt from './format.js';

function siteRows(app, keep) {
  const { model, range, bucketWidth } = app;
  const rows = [];
  for (const site of model.sites) {
    if (!keep(site)) continue;
    const act = activityIn(site, range, bucketWidth);
    if (range && act.allocations === 0 && act.bytes === 0) continue;
    const f = siteFrame(model, site);
    rows.push({
      site,
      fn: f ? f.function : '??',
      location: siteLocation(model, site),
      allocations: act.allocations,
      bytes: act.bytes,
    });
  }
  return rows;
}

function functionColumn(app) {
  return {
    key: 'fn', label: 'Allocating function', get: (r) => r.fn,
    format: (v, r) => h('button', {
      // Not a tab stop of its own: the row is (Enter on the row does the same).
      type: 'button', class: 'link', tabindex: -1, title: `${v}\nsite #${r.site.id}: show it in the flame graph`,
      onclick: () => app.openSite(r.site.id),
    }, v),
  };
}

const location = { key: 'location', label: 'Where', get: (r) => r.location, format: (v) => h('span', { class: 'loc', title: v }, v) };
const numeric = (key, label, get, format, title) => ({ key, label, get, format: (v) => format(v), numeric: true, title });
const allocations = numeric('allocations', 'Allocations', (r) => r.allocations, fmt.count, 'Allocation calls (in the time range, if one is selected)');
const bytesCol = numeric('bytes', 'Bytes', (r) => r.bytes, fmt.bytes, 'Bytes allocated (in the time range, if one is selected)');

function siteTableView(spec) {
  return (panel, app) => {
    const table = sortableTable([functionColumn(app), location, ...spec.columns], {
      sortKey: spec.sortKey,
      caption: spec.title,
      emptyText: spec.emptyText,
      onActivate: (r) => app.openSite(r.site.id),
    });
    const note = h('span', { class: 'hint' });
    const filter = h('input', { type: 'search', class: 'search', placeholder: 'Filter by function or file', 'aria-label': `Filter ${spec.title}` });
    panel.append(h('h2', null, spec.title), h('p', { class: 'hint' }, spec.hint),
      h('div', { class: 'toolbar' }, filter, note), table.el);
    function refresh() {
      const needle = filter.value.trim().toLowerCase();
      const rows = siteRows(app, spec.keep).filter((r) => !needle
        || r.fn.toLowerCase().includes(needle) || r.location.toLowerCase().includes(needle));
      table.setRows(rows);
      const why = [app.range ? 'allocated in the selected time range' : '', needle ? `matching \u201c${filter.value.trim()}\u201d` : '']
        .filter(Boolean).join(' and ');
      note.textContent = why ? `${rows.length.toLocaleString('en-US')} sites ${why}.` : '';
      if (why && !rows.length) table.el.replaceChildren(emptyNote(`No site in this table ${why}.`));
    }
    filter.addEventListener('input', refresh);
    refresh();
    return { onRange: refresh };
  };
}

export const siteTablesViews = [
  {
    id: 'sites', label: 'Top sites',
    mount: siteTableView({
      title: 'Top allocation sites',
      hint: 'One row per distinct call stack. Arrow keys move between rows, Enter opens the site in the flame graph; headers sort.',
      keep: () => true,
      sortKey: 'bytes',
      emptyText: 'This trace recorded no allocation.',
      columns: [
        allocations, bytesCol,
        numeric('peak_bytes', 'Live at peak', (r) => r.site.peak_bytes, fmt.bytes, 'Bytes from this site live at the heap peak'),
        numeric('leaked_bytes', 'Leaked', (r) => r.site.leaked_bytes, fmt.bytes),
        numeric('temporary', 'Temporary', (r) => r.site.temporary, fmt.count, 'Allocations freed again before any other allocation'),
      ],
    }),
  },
  {
    id: 'leaks', label: 'Leaks',
    mount: siteTableView({
      title: 'Leaks: blocks never freed',
      hint: 'Sites whose blocks were still allocated when the program exited. With a time range, only sites that allocated in it are listed.',
      keep: (s) => s.leaked_bytes > 0 || s.leaked_blocks > 0,
      sortKey: 'leaked_bytes',
      emptyText: 'Nothing leaked: every block was freed before exit.',
      columns: [
        numeric('leaked_blocks', 'Leaked blocks', (r) => r.site.leaked_blocks, fmt.count),
        numeric('leaked_bytes', 'Leaked bytes', (r) => r.site.leaked_bytes, fmt.bytes),
        allocations, bytesCol,
      ],
    }),
  },
  {
    id: 'copies', label: 'Copies',
    mount: siteTableView({
      title: 'Copies: reallocations that moved',
      hint: 'Sites whose realloc calls had to move the block, and the bytes that were copied.',
      keep: (s) => s.copies > 0,
      sortKey: 'copied_bytes',
      emptyText: 'No reallocation had to move its block.',
      columns: [
        numeric('copies', 'Moves', (r) => r.site.copies, fmt.count),
        numeric('copied_bytes', 'Bytes copied', (r) => r.site.copied_bytes, fmt.bytes),
        allocations, bytesCol,
      ],
    }),
  },
];

/** Free sites of a trace of `run --free-stacks`: where blocks were released, by bytes. */
export function freeSitesView(panel, app) {
  const { model } = app;
  const table = sortableTable([
    { key: 'fn', label: 'Freeing function', get: (r) => r.fn },
    location,
    numeric('frees', 'Frees', (r) => r.frees, fmt.count, 'free and delete calls made from this stack'),
    numeric('bytes', 'Bytes released', (r) => r.bytes, fmt.bytes, 'Sizes of the blocks these calls released'),
  ], { sortKey: 'bytes', caption: 'Free sites', emptyText: 'This trace recorded no free.' });
  const filter = h('input', { type: 'search', class: 'search', placeholder: 'Filter by function or file', 'aria-label': 'Filter free sites' });
  panel.append(h('h2', null, 'Free sites: where blocks were released'),
    h('p', { class: 'hint' }, 'One row per distinct call stack of free and delete calls, over the whole run (a realloc releases its old block at its own site, under Top sites).'),
    h('div', { class: 'toolbar' }, filter), table.el);
  const rows = model.free_sites.map((s) => {
    const f = siteFrame(model, s);
    return { fn: f ? f.function : '??', location: siteLocation(model, s), frees: s.frees, bytes: s.bytes };
  });
  function refresh() {
    const needle = filter.value.trim().toLowerCase();
    table.setRows(rows.filter((r) => !needle || r.fn.toLowerCase().includes(needle)
      || r.location.toLowerCase().includes(needle)));
  }
  filter.addEventListener('input', refresh);
  refresh();
  return {};
}

/** "start 8 KiB · exit 12 KiB": a thread's resident stack at each snapshot. */
function stackAt(r) {
  const at = r.stack_rss_at && typeof r.stack_rss_at === 'object' ? r.stack_rss_at : {};
  return Object.entries(at).map(([k, v]) => `${k} ${typeof v === 'number' ? fmt.bytes(v) : '\u2014'}`).join(' \u00b7 ');
}

/** Thread stacks and per-thread allocation figures. */
export function threadsView(panel, app) {
  const table = sortableTable([
    { key: 'tid', label: 'TID', get: (r) => r.tid, format: (v) => String(v), numeric: true },
    { key: 'name', label: 'Name', get: (r) => r.name || '' },
    { key: 'allocations', label: 'Allocations', get: (r) => r.allocations ?? 0, format: fmt.count, numeric: true },
    { key: 'bytes', label: 'Bytes allocated', get: (r) => r.bytes ?? 0, format: fmt.bytes, numeric: true },
    { key: 'stack_size', label: 'Stack size', get: (r) => r.stack_size ?? -1, format: (v) => (v < 0 ? '\u2014' : fmt.bytes(v)), numeric: true },
    { key: 'stack_rss', label: 'Stack resident', get: (r) => r.stack_rss ?? -1, format: (v) => (v < 0 ? '\u2014' : fmt.bytes(v)), numeric: true },
    { key: 'stack_rss_at', label: 'Stack resident at snapshots', get: (r) => stackAt(r), title: 'Resident stack bytes at each smaps snapshot (\u2014: not running or not found then)' },
    { key: 'use', label: 'Resident share', get: (r) => (r.stack_size ? (r.stack_rss ?? 0) / r.stack_size : -1), format: (v) => (v < 0 ? '\u2014' : fmt.percent(v, 1)), numeric: true, title: 'Resident part of the reserved stack' },
  ], { sortKey: 'bytes', caption: 'Threads', emptyText: 'This trace recorded no thread.' });
  panel.append(h('h2', null, 'Threads and their stacks'),
    h('p', { class: 'hint' }, 'Allocations made by each thread over the whole run; its name as the recorder last saw it; the size of the mapping holding its stack (guard page excluded) and the part of it that was resident, at the latest smaps snapshot and at each one.'),
    table.el);
  table.setRows(app.model.threads);
  return {};
}
