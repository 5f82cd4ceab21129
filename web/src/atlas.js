// Layout atlas: the address space of one snapshot as a treemap. Groups (each ELF object with its
// segments, heap, arenas, stacks, anonymous mappings, kernel pages) follow address order; each
// cell is one region coloured by kind and sized by virtual or resident bytes. Hovering a cell
// shows its figures, ELF sections and largest static symbols.
import { hierarchy, treemap, treemapSquarify } from 'd3-hierarchy';
import { h, emptyNote } from './dom.js';
import { groupRegions } from './model.js';
import * as fmt from './format.js';

export const KIND_COLOURS = {
  text: '#e15759', rodata: '#f28e2b', relro: '#edc948', data: '#59a14f', bss: '#8cd17d',
  heap: '#b07aa1', arena: '#d4a6c8', stack: '#4e79a7', guard: '#9d9d9d', anon: '#76b7b2',
  file: '#9c755f', shm: '#ff9da7', vdso: '#bab0ac', vvar: '#d7d2cf', vsyscall: '#d7d2cf', other: '#e8e8e8',
};

function symbolsByRegion(layout) {
  const regions = layout.regions || [];
  const starts = regions.map((r) => r.start);
  const out = new Map();
  for (const sym of layout.symbols || []) {
    let lo = 0;
    let hi = starts.length - 1;
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= sym.address) { at = mid; lo = mid + 1; } else hi = mid - 1;
    }
    if (at < 0 || sym.address >= regions[at].end) continue;
    if (!out.has(at)) out.set(at, []);
    out.get(at).push(sym);
  }
  for (const list of out.values()) list.sort((a, b) => b.size - a.size);
  return out;
}

function row(label, value) {
  return h('tr', null, h('th', { scope: 'row' }, label), h('td', null, value));
}

function regionDetails(r, symbols) {
  const dirty = (r.private_dirty || 0) + (r.shared_dirty || 0);
  return [
    h('h3', null, h('span', { class: 'swatch', style: { background: KIND_COLOURS[r.kind] || KIND_COLOURS.other } }), ` ${r.kind}`),
    h('p', { class: 'mono' }, `${fmt.hex(r.start)}\u2013${fmt.hex(r.end)} ${r.perms || ''}`),
    r.path || r.object ? h('p', { class: 'mono wrap' }, r.object || r.path) : null,
    r.detail || r.tid ? h('p', null, [r.detail, r.tid ? `tid ${r.tid}` : null].filter(Boolean).join(' \u00b7 ')) : null,
    h('table', { class: 'figures' }, h('tbody', null,
      row('Virtual', fmt.bytes(r.size)), row('Resident', fmt.bytes(r.rss)), row('Proportional (PSS)', fmt.bytes(r.pss)),
      row('Unique (USS)', fmt.bytes(r.uss)), row('Dirty', fmt.bytes(dirty)), row('Swapped', fmt.bytes(r.swap)),
      r.anon_huge_pages ? row('Huge pages', fmt.bytes(r.anon_huge_pages)) : null)),
    r.sections && r.sections.length ? h('p', null, h('strong', null, 'Sections: '), h('span', { class: 'mono wrap' }, r.sections.join(' '))) : null,
    symbols && symbols.length ? h('div', null, h('strong', null, 'Largest symbols'), h('ol', { class: 'symbols' }, symbols.slice(0, 6).map((s) =>
      h('li', null, h('span', { class: 'mono' }, s.name), ` ${fmt.bytes(s.size)}${s.rss !== undefined ? `, ${fmt.bytes(s.rss)} resident` : ''}`)))) : null,
  ];
}

export function atlasView(panel, app) {
  const snaps = app.model.snapshots;
  panel.append(h('h2', null, 'Address space'));
  if (!snaps.length) {
    panel.append(emptyNote('This trace has no layout snapshot, so the address space cannot be drawn.'));
    return {};
  }
  let snap = snaps.find((s) => s.label === 'peak') || snaps[snaps.length - 1];
  let sizeBy = 'size';
  const snapBar = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Snapshot' });
  const sizeBar = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Size cells by' });
  const totals = h('p', { class: 'hint' });
  const strip = h('div', { class: 'strip', role: 'img', 'aria-label': 'Regions in address order' });
  const map = h('div', { class: 'atlas', role: 'img', 'aria-label': 'Address space map' });
  const info = h('aside', { class: 'atlas-info', 'aria-live': 'polite' });
  const legend = h('div', { class: 'legend-row' });
  panel.append(h('div', { class: 'toolbar' }, h('span', { class: 'tool-label' }, 'Snapshot'), snapBar, h('span', { class: 'tool-label' }, 'Size by'), sizeBar),
    totals, h('div', { class: 'strip-label' }, h('span', null, 'low addresses'), h('span', null, 'every region in address order, widths on a log scale'), h('span', null, 'high addresses')),
    strip, h('div', { class: 'atlas-row' }, map, info), legend);

  for (const s of snaps) {
    snapBar.append(h('button', { type: 'button', role: 'radio', 'data-snapshot': s.label, onclick: () => { snap = s; draw(); } }, `${s.label} (${fmt.seconds(s.time)})`));
  }
  for (const [key, label] of [['size', 'Virtual'], ['rss', 'Resident']]) {
    sizeBar.append(h('button', { type: 'button', role: 'radio', 'data-size': key, onclick: () => { sizeBy = key; draw(); } }, label));
  }

  let cells = [];
  let symbols = new Map();
  const describe = (ev) => {
    const cell = ev.target.closest('.cell, .strip-seg');
    if (!cell) return;
    const i = Number(cell.dataset.index);
    info.replaceChildren(...regionDetails(cells[i], symbols.get(i)).filter(Boolean));
  };
  for (const el of [map, strip]) {
    el.addEventListener('mouseover', describe);
    el.addEventListener('focusin', describe);
  }

  function draw() {
    for (const b of snapBar.children) b.setAttribute('aria-checked', b.dataset.snapshot === snap.label ? 'true' : 'false');
    for (const b of sizeBar.children) b.setAttribute('aria-checked', b.dataset.size === sizeBy ? 'true' : 'false');
    const layout = snap.layout;
    cells = layout.regions || [];
    symbols = symbolsByRegion(layout);
    const t = layout.totals || {};
    totals.textContent = `${cells.length} regions \u00b7 virtual ${fmt.bytes(t.size)} \u00b7 resident ${fmt.bytes(t.rss)} \u00b7 PSS ${fmt.bytes(t.pss)} \u00b7 USS ${fmt.bytes(t.uss)} \u00b7 swapped ${fmt.bytes(t.swap)}. Hover a cell for its figures.`;
    map.replaceChildren();
    drawStrip();
    info.replaceChildren(h('p', { class: 'hint' }, 'Hover a region to see its figures, sections and largest symbols.'));
    const index = new Map(cells.map((r, i) => [r, i]));
    const groups = groupRegions(layout);
    const root = hierarchy({ children: groups.map((g) => ({ group: g, children: g.regions.map((r) => ({ region: r })) })) })
      .sum((d) => (d.region ? Math.max(0, d.region[sizeBy] || 0) : 0));
    if (!root.value) {
      map.append(emptyNote(`No region has ${sizeBy === 'rss' ? 'resident' : 'virtual'} bytes in this snapshot.`));
      return;
    }
    const width = Math.max(400, map.clientWidth || 800);
    const height = 420;
    treemap().size([width, height]).tile(treemapSquarify.ratio(1.4)).paddingOuter(2).paddingTop(18).paddingInner(1)(root);
    let hidden = 0;
    for (const g of root.children || []) {
      if (!g.value) { hidden += g.data.group.regions.length; continue; }
      const name = g.data.group.label;
      map.append(h('div', {
        class: 'group', title: `${name}: ${fmt.bytes(g.value)}`,
        style: { left: `${g.x0}px`, top: `${g.y0}px`, width: `${g.x1 - g.x0}px`, height: `${g.y1 - g.y0}px` },
      }, h('span', { class: 'group-label' }, `${fmt.basename(name) || name} ${fmt.bytes(g.value)}`)));
      for (const leaf of g.children || []) {
        const r = leaf.data.region;
        if (!leaf.value) { hidden += 1; continue; }
        map.append(h('div', {
          class: 'cell', 'data-index': index.get(r), 'data-kind': r.kind, tabindex: 0,
          'aria-label': `${r.kind} ${fmt.bytes(r[sizeBy])}${r.object ? ` in ${fmt.basename(r.object)}` : ''}`,
          style: { left: `${leaf.x0}px`, top: `${leaf.y0}px`, width: `${Math.max(0, leaf.x1 - leaf.x0)}px`, height: `${Math.max(0, leaf.y1 - leaf.y0)}px`, background: KIND_COLOURS[r.kind] || KIND_COLOURS.other },
        }, leaf.x1 - leaf.x0 > 46 && leaf.y1 - leaf.y0 > 14 ? h('span', { class: 'cell-label' }, r.kind) : null));
      }
    }
    map.style.height = `${height}px`;
    if (hidden) totals.textContent += ` ${hidden} regions with no ${sizeBy === 'rss' ? 'resident' : 'virtual'} bytes are not drawn.`;
    const byKind = layout.by_kind || {};
    legend.replaceChildren(...Object.keys(byKind).map((k) => h('span', { class: 'legend-item' },
      h('span', { class: 'swatch', style: { background: KIND_COLOURS[k] || KIND_COLOURS.other } }),
      `${k} ${fmt.bytes(byKind[k][sizeBy])}`)));
  }

  // Address order at a glance: one segment per region, width growing with log2 of its size,
  // so a 4 KiB guard page and a 64 MiB arena reservation are both visible.
  function drawStrip() {
    const weight = (r) => {
      const bytes = Math.max(0, r[sizeBy] || 0);
      return bytes ? 1 + Math.log2(1 + bytes / 4096) : 0.35;
    };
    const total = cells.reduce((a, r) => a + weight(r), 0);
    strip.replaceChildren(...cells.map((r, i) => h('div', {
      class: 'strip-seg', 'data-index': i,
      title: `${r.kind} ${fmt.hex(r.start)} ${fmt.bytes(r.size)} virtual, ${fmt.bytes(r.rss)} resident`,
      style: { width: `${(100 * weight(r)) / total}%`, background: r[sizeBy] ? KIND_COLOURS[r.kind] || KIND_COLOURS.other : '#f4f4f4' },
    })));
  }

  draw();
  return {};
}
