// The resident split: what the RSS was made of at the heap peak and at exit, as stacked bars
// with a legend of figures. Bytes not covered by any part are shown as "not attributed".
import { h, emptyNote } from './dom.js';
import * as fmt from './format.js';

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac', '#86bcb6', '#d37295'];
const UNATTRIBUTED = '#d9d9d9';

function colourOf(names) {
  const map = new Map();
  for (const n of names) if (!map.has(n)) map.set(n, PALETTE[map.size % PALETTE.length]);
  return map;
}

function split(title, moment, colours) {
  const parts = moment.parts.filter((p) => p.bytes > 0);
  const sum = parts.reduce((a, p) => a + p.bytes, 0);
  const rest = moment.rss - sum;
  const total = Math.max(moment.rss, sum);
  const rows = [...parts.map((p) => ({ what: p.what, bytes: p.bytes, colour: colours.get(p.what) }))];
  if (rest > 0) rows.push({ what: 'not attributed', bytes: rest, colour: UNATTRIBUTED });
  return h('div', { class: 'split' },
    h('h3', null, `${title}: RSS ${fmt.bytes(moment.rss)} at ${fmt.seconds(moment.time)}`),
    h('div', { class: 'bar', role: 'img', 'aria-label': `${title} resident split` }, rows.map((r) => h('div', {
      class: 'seg', title: `${r.what}: ${fmt.bytes(r.bytes)} (${fmt.percent(r.bytes, total)})`,
      style: { width: `${(100 * r.bytes) / total}%`, background: r.colour },
    }))),
    h('table', { class: 'legend' }, h('tbody', null, rows.map((r) => h('tr', null,
      h('td', null, h('span', { class: 'swatch', style: { background: r.colour } })),
      h('td', null, r.what),
      h('td', { class: 'num' }, fmt.bytes(r.bytes)),
      h('td', { class: 'num' }, fmt.percent(r.bytes, total)))))));
}

export function residentView(panel, app) {
  const { at_peak: peak, at_exit: exit } = app.model.resident;
  panel.append(h('h2', null, 'What the resident memory is made of'),
    h('p', { class: 'hint' }, 'Every resident byte, named: code, static data, stacks, live heap, allocator overhead and retained free memory, other mappings.'));
  if (!peak && !exit) {
    panel.append(emptyNote('This trace has no resident split (no memory snapshot was taken at the peak or at exit).'));
    return {};
  }
  const colours = colourOf([...(peak ? peak.parts : []), ...(exit ? exit.parts : [])].map((p) => p.what));
  const box = h('div', { class: 'splits' });
  if (peak) box.append(split('At the heap peak', peak, colours));
  if (exit) box.append(split('At exit', exit, colours));
  panel.append(box);
  return {};
}
