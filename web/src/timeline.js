// Timeline: resident memory over time (file-backed and anonymous, stacked, from the ~10 ms RSS
// samples), total RSS and the live heap, with the heap peak marked; at the smaps snapshots (start,
// peak, exit) a stacked bar of RSS by kind of mapping (code, static data, heap, stacks...), with
// a legend, a tooltip and the same figures as a table. Dragging across the plot selects a time
// range, which the tables and flame graphs then follow.
import uPlot from 'uplot';
import { h, emptyNote } from './dom.js';
import { RSS_KINDS, rssByKind } from './model.js';
import { KIND_COLOURS } from './atlas.js';
import * as fmt from './format.js';

// A kind's colour: that of its first region kind in the layout atlas.
const KIND_COLOUR = Object.fromEntries(RSS_KINDS.map((k) => [k.id, KIND_COLOURS[k.kinds[0]] || KIND_COLOURS.other]));
const BAR_CSS_PX = 16;

const COLOURS = {
  file: '#8fb8de',
  anon: '#f2b880',
  rss: '#243b53',
  heap: '#c0392b',
  peak: '#c0392b',
};

// Axis steps in round binary units: 1, 2, 5, 10, 20, 50, 100, 200, 500 B, KiB, MiB...
const BYTE_STEPS = [];
for (let unit = 1; unit <= 1024 ** 5; unit *= 1024) {
  for (const m of [1, 2, 5, 10, 20, 50, 100, 200, 500]) BYTE_STEPS.push(m * unit);
}

function chartData(tl) {
  const n = tl.t.length;
  const file = tl.rss_file || new Array(n).fill(null);
  const anon = tl.rss_anon || new Array(n).fill(null);
  const stacked = new Array(n);
  for (let i = 0; i < n; i++) stacked[i] = file[i] === null || anon[i] === null ? null : file[i] + anon[i];
  return [tl.t, file, stacked, tl.rss || new Array(n).fill(null), tl.heap_live || new Array(n).fill(null)];
}

function peakMarker(peakTime) {
  return {
    hooks: {
      draw: (u) => {
        if (peakTime === null || peakTime < u.scales.x.min || peakTime > u.scales.x.max) return;
        const x = Math.round(u.valToPos(peakTime, 'x', true));
        const { ctx } = u;
        const { top, height } = u.bbox;
        ctx.save();
        ctx.strokeStyle = COLOURS.peak;
        ctx.setLineDash([5, 4]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = COLOURS.peak;
        ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
        ctx.fillText('heap peak', x + 4 * devicePixelRatio, top + 14 * devicePixelRatio);
        ctx.restore();
      },
    },
  };
}

/** Stacked bars of RSS by kind at the snapshots, drawn over the chart; `hover` gets the index of
 * the snapshot under the cursor (or -1). */
function kindBars(snaps, hover) {
  const barX = (u, snap) => {
    const { left, width } = u.bbox;
    const bw = BAR_CSS_PX * devicePixelRatio;
    const x = u.valToPos(snap.time, 'x', true) - bw / 2;
    return Math.min(Math.max(x, left), left + width - bw);
  };
  return {
    hooks: {
      draw: (u) => {
        const { ctx } = u;
        const bw = BAR_CSS_PX * devicePixelRatio;
        ctx.save();
        for (const snap of snaps) {
          if (snap.time < u.scales.x.min || snap.time > u.scales.x.max) continue;
          const x = barX(u, snap);
          let below = 0;
          for (const k of RSS_KINDS) {
            const bytes = snap.parts[k.id];
            if (!bytes) continue;
            const y0 = u.valToPos(below, 'y', true);
            const y1 = u.valToPos(below + bytes, 'y', true);
            ctx.fillStyle = KIND_COLOUR[k.id];
            ctx.fillRect(x, y1, bw, Math.max(1, y0 - y1));
            below += bytes;
          }
          const top = u.valToPos(below, 'y', true);
          ctx.strokeStyle = '#1f2933';
          ctx.lineWidth = devicePixelRatio;
          ctx.strokeRect(x, top, bw, u.valToPos(0, 'y', true) - top);
          ctx.fillStyle = '#1f2933';
          ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          const label = snap.label;
          const tw = ctx.measureText(label).width;
          const lx = Math.min(Math.max(x + bw / 2 - tw / 2, u.bbox.left), u.bbox.left + u.bbox.width - tw);
          ctx.fillText(label, lx, top - 4 * devicePixelRatio);
        }
        ctx.restore();
      },
      setCursor: (u) => {
        const left = u.cursor.left;
        let at = -1;
        if (left !== null && left >= 0) {
          snaps.forEach((snap, i) => {
            const x = (barX(u, snap) / devicePixelRatio) - u.bbox.left / devicePixelRatio + BAR_CSS_PX / 2;
            if (Math.abs(left - x) <= BAR_CSS_PX / 2 + 4) at = i;
          });
        }
        hover(at, u);
      },
    },
  };
}

function kindTable(snaps) {
  const present = RSS_KINDS.filter((k) => snaps.some((s) => s.parts[k.id] > 0));
  return h('table', { class: 'data kinds-table' },
    h('caption', null, 'Resident memory by kind at the snapshots'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Kind'),
      ...snaps.map((s) => h('th', { scope: 'col', class: 'num' }, `${s.label} (${fmt.seconds(s.time)})`)))),
    h('tbody', null,
      ...present.map((k) => h('tr', { 'data-kind': k.id },
        h('th', { scope: 'row' }, h('span', { class: 'swatch', style: { background: KIND_COLOUR[k.id] } }), ` ${k.label}`),
        ...snaps.map((s) => h('td', { class: 'num' }, fmt.bytes(s.parts[k.id]))))),
      h('tr', { class: 'total' }, h('th', { scope: 'row' }, 'RSS (sum of the snapshot)'),
        ...snaps.map((s) => h('td', { class: 'num' }, fmt.bytes(s.rss))))));
}

export function timelineView(panel, app) {
  const { model } = app;
  const tl = model.timeline;
  panel.append(h('h2', null, 'Memory over time'));
  if (tl.t.length < 2) {
    panel.append(emptyNote('This trace has no memory samples over time, so there is no timeline (and no time range to select).'));
    return {};
  }
  const s = model.summary;
  panel.append(h('p', { class: 'hint' },
    `Drag across the chart to select a time range: tables and flame graphs then count only allocations made in it. `,
    s.peak_live_bytes ? `The live heap peaked at ${fmt.bytes(s.peak_live_bytes)} at ${fmt.seconds(s.peak_time)}.` : ''));
  const snaps = rssByKind(model.snapshots);
  const kindMax = Math.max(0, ...snaps.map((x) => x.rss));
  panel.append(h('p', { class: 'hint measured' },
    'Lines and areas: RSS read from /proc/self/statm about every 10 ms, split into anonymous and file-backed pages. ',
    snaps.length
      ? `Bars at ${snaps.map((x) => x.label).join(', ')}: RSS by kind of mapping, from the smaps snapshots the recorder took at those moments only (hover a bar, or see the table below).`
      : 'The trace holds no smaps snapshot, so RSS by kind of mapping is not known at any moment.'));
  const box = h('div', { class: 'chart-box' });
  const tip = h('div', { class: 'kind-tip', role: 'tooltip', hidden: true });
  const legend = h('div', { class: 'kind-legend', 'aria-label': 'Kinds of resident memory at the snapshots' },
    ...(snaps.length ? [h('span', { class: 'tool-label' }, 'At the snapshots:')] : []),
    ...RSS_KINDS.filter((k) => snaps.some((x) => x.parts[k.id] > 0)).map((k) =>
      h('span', { class: 'kind-key', 'data-kind': k.id }, h('span', { class: 'swatch', style: { background: KIND_COLOUR[k.id] } }), ` ${k.label}`)));
  function showTip(i, u) {
    if (i < 0) {
      tip.hidden = true;
      return;
    }
    const snap = snaps[i];
    tip.replaceChildren(
      h('strong', null, `${snap.label} snapshot at ${fmt.seconds(snap.time)}: RSS ${fmt.bytes(snap.rss)}`),
      h('table', { class: 'figures' }, h('tbody', null,
        ...RSS_KINDS.filter((k) => snap.parts[k.id] > 0).reverse().map((k) => h('tr', null,
          h('th', { scope: 'row' }, h('span', { class: 'swatch', style: { background: KIND_COLOUR[k.id] } }), ` ${k.label}`),
          h('td', { class: 'num' }, fmt.bytes(snap.parts[k.id])))))));
    tip.hidden = false;
    const x = u.valToPos(snap.time, 'x') + u.over.offsetLeft;
    const wide = box.clientWidth || 600;
    tip.style.left = `${Math.min(x + 14, wide - 300)}px`;
    tip.style.top = `${u.over.offsetTop + 8}px`;
  }
  const end = tl.t[tl.t.length - 1];
  const field = (label) => h('input', { type: 'number', step: 'any', min: tl.t[0], max: end, 'aria-label': label, class: 'range-input' });
  const from = field('Range start in seconds');
  const to = field('Range end in seconds');
  const form = h('form', { class: 'toolbar range-form' },
    h('span', { class: 'tool-label' }, 'Time range from'), from, h('span', { class: 'tool-label' }, 's to'), to,
    h('span', { class: 'tool-label' }, 's'),
    h('button', { type: 'submit', class: 'reset' }, 'Apply'),
    h('button', { type: 'button', class: 'reset', onclick: () => app.setRange(null) }, 'Whole run'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const lo = Number(from.value);
    const hi = Number(to.value);
    if (from.value !== '' && to.value !== '' && hi > lo) app.setRange([lo, hi]);
  });
  panel.append(box, legend, form);
  if (snaps.length) panel.append(kindTable(snaps));

  const yBytes = (u, vals) => vals.map((v) => fmt.bytes(v));
  let plot = null;
  let drawnWidth = 0;
  let settingFromApp = false;

  function make() {
    drawnWidth = Math.max(400, box.clientWidth || panel.clientWidth - 32);
    const opts = {
      width: drawnWidth,
      height: 420,
      cursor: { drag: { x: true, y: false, setScale: false } },
      select: { show: true },
      legend: { live: true },
      scales: { x: { time: false }, y: { range: (u, lo, hi) => [0, Math.max(hi || 0, kindMax) * 1.08 || 1] } },
      axes: [
        { label: 'time since start (s)', values: (u, vals) => vals.map((v) => fmt.seconds(v)) },
        { values: yBytes, size: 80, incrs: BYTE_STEPS },
      ],
      series: [
        { label: 'time', value: (u, v) => (v === null ? '\u2014' : fmt.seconds(v)) },
        { label: 'RSS file-backed', stroke: COLOURS.file, fill: `${COLOURS.file}cc`, width: 1, value: (u, v) => fmt.bytes(v) },
        { label: 'RSS anonymous (stacked)', stroke: COLOURS.anon, width: 1, value: (u, v, si, i) => fmt.bytes(v === null || tl.rss_file === null ? null : v - tl.rss_file[i]) },
        { label: 'RSS total', stroke: COLOURS.rss, width: 2, value: (u, v) => fmt.bytes(v) },
        { label: 'Live heap', stroke: COLOURS.heap, width: 2, value: (u, v) => fmt.bytes(v) },
      ],
      bands: [{ series: [2, 1], fill: `${COLOURS.anon}b3` }],
      plugins: [peakMarker(s.peak_live_bytes ? s.peak_time : null), kindBars(snaps, showTip)],
      hooks: {
        setSelect: [(u) => {
          if (settingFromApp) return;
          if (u.select.width < 3) {
            app.setRange(null);
            return;
          }
          const lo = u.posToVal(u.select.left, 'x');
          const hi = u.posToVal(u.select.left + u.select.width, 'x');
          app.setRange([lo, hi]);
        }],
      },
    };
    box.replaceChildren();
    plot = new uPlot(opts, chartData(tl), box);
    box.append(tip);
    showRange(app.range);
  }

  function showRange(range) {
    from.value = range ? range[0].toFixed(3) : '';
    to.value = range ? range[1].toFixed(3) : '';
    if (!plot) return;
    settingFromApp = true;
    if (range) {
      const left = plot.valToPos(range[0], 'x');
      const right = plot.valToPos(range[1], 'x');
      plot.setSelect({ left, width: Math.max(0, right - left), top: 0, height: plot.over.clientHeight }, false);
    } else {
      plot.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    }
    settingFromApp = false;
  }

  make();
  return {
    onRange: showRange,
    onShow() {
      if (Math.abs((box.clientWidth || 0) - drawnWidth) > 40) make();
    },
  };
}
