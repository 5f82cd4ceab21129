// Timeline: resident memory by kind (file-backed and anonymous, stacked), total RSS and the live
// heap over time, with the heap peak marked. Dragging across the plot selects a time range,
// which the tables and flame graphs then follow.
import uPlot from 'uplot';
import { h, emptyNote } from './dom.js';
import * as fmt from './format.js';

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
  const box = h('div', { class: 'chart-box' });
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
  panel.append(box, form);

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
      scales: { x: { time: false } },
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
      plugins: [peakMarker(s.peak_live_bytes ? s.peak_time : null)],
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
