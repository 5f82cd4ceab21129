// Flame graphs of the allocation sites: one per measure (allocation calls, bytes, live at the
// peak, leaked, temporary). Calls and bytes follow the selected time range. Click a frame to
// zoom into it; search highlights matching frames; Reset zooms out and clears the search.
// By keyboard (the graph is one tab stop): arrow keys move a cursor between the drawn frames
// (Up to the largest callee, Down to the caller, Left/Right along the same depth), Home to the
// root, Enter or Space zooms into the cursor's frame, Escape resets.
import { select } from 'd3-selection';
import flamegraph from 'd3-flame-graph';
import { h, emptyNote } from './dom.js';
import { activityIn, flameTree, siteLocation } from './model.js';
import * as fmt from './format.js';

const MEASURES = [
  { id: 'allocations', label: 'Allocation calls', format: fmt.count, value: (app) => (s) => activityIn(s, app.range, app.bucketWidth).allocations, ranged: true, hue: 'warm', empty: 'No allocation calls' },
  { id: 'bytes', label: 'Bytes allocated', format: fmt.bytes, value: (app) => (s) => activityIn(s, app.range, app.bucketWidth).bytes, ranged: true, hue: 'warm', empty: 'No bytes allocated' },
  { id: 'peak', label: 'Live at peak', format: fmt.bytes, value: () => (s) => s.peak_bytes, hue: 'blue', empty: 'No heap bytes live at the peak' },
  { id: 'leaked', label: 'Leaked', format: fmt.bytes, value: () => (s) => s.leaked_bytes, hue: 'red', empty: 'Nothing leaked' },
  { id: 'temporary', label: 'Temporary', format: fmt.count, value: () => (s) => s.temporary, hue: 'aqua', empty: 'No temporary allocations' },
];
const FOCUS_COLOUR = '#2b6cb0';

export function flameView(panel, app) {
  const { model } = app;
  let measure = MEASURES[1];
  let chart = null;
  let tree = null;
  let focused = null;
  let drawnWidth = 0;

  const modeBar = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Measure' });
  const search = h('input', { type: 'search', placeholder: 'Search functions', 'aria-label': 'Search functions', class: 'search' });
  const reset = h('button', { type: 'button', class: 'reset', title: 'Zoom out and clear the search (Escape)' }, 'Reset zoom');
  // details: the frame under the pointer, or search results; chosen: the frame zoomed into.
  const details = h('div', { class: 'details hover-line' });
  let searchText = '';
  const chosen = h('div', { class: 'details chosen', 'aria-live': 'polite' });
  const note = h('p', { class: 'hint' });
  const box = h('div', {
    class: 'flame-box', tabindex: '0', role: 'group',
    'aria-label': 'Flame graph. Arrow keys move between frames, Enter zooms into a frame, Escape resets the zoom.',
  });
  // The frame under the keyboard cursor, announced as it moves.
  const cursorLine = h('div', { class: 'details cursor-line', 'aria-live': 'polite' });
  let cursor = null;
  const keys = h('span', { class: 'tool-label keys' }, 'Keyboard: Tab to the graph, arrow keys move, Enter zooms, Escape resets');
  panel.append(h('div', { class: 'toolbar' }, modeBar, search, reset, keys), note, chosen, details, cursorLine, box);

  // A sampled trace has no temporaries to show (null): no button for them.
  const measures = MEASURES.filter((m) => m.id !== 'temporary' || model.summary.temporary_allocations !== null);
  for (const m of measures) {
    modeBar.append(h('button', {
      type: 'button', role: 'radio', 'data-measure': m.id, 'aria-checked': m === measure ? 'true' : 'false',
      onclick: () => { measure = m; draw(); },
    }, m.label));
  }

  function label(d) {
    const total = tree ? tree.total : 0;
    const f = d.data.frame >= 0 ? model.frames[d.data.frame] : null;
    const where = f ? (f.file ? `${f.file}${f.line !== null ? `:${f.line}` : ''}` : f.object) : '';
    const sites = d.data.sites.length ? ` \u00b7 site${d.data.sites.length > 1 ? 's' : ''} #${d.data.sites.join(', #')}` : '';
    return `${d.data.name} \u2014 ${measure.format(d.value)} (${fmt.percent(d.value, total)})${where ? ` \u00b7 ${where}` : ''}${sites}`;
  }

  function draw() {
    for (const b of modeBar.children) b.setAttribute('aria-checked', b.dataset.measure === measure.id ? 'true' : 'false');
    box.replaceChildren();
    details.textContent = '';
    chosen.textContent = '';
    cursor = null;
    cursorLine.textContent = '';
    note.textContent = measure.ranged && app.range
      ? `Counting only allocations made between ${fmt.seconds(app.range[0])} and ${fmt.seconds(app.range[1])}.`
      : measure.ranged ? '' : 'Whole run (this measure does not follow the time range).';
    const built = flameTree(model, measure.value(app));
    let total = 0;
    for (const n of built.nodeOfSite.values()) total += n.value;
    tree = { ...built, total };
    chart = null;
    if (!total) {
      box.append(emptyNote(model.sites.length ? `${measure.empty}${measure.ranged && app.range ? ' in the selected time range' : ''}.` : 'This trace recorded no allocation site.'));
      return;
    }
    drawnWidth = Math.max(320, box.clientWidth || panel.clientWidth - 32);
    chart = flamegraph()
      .width(drawnWidth)
      .cellHeight(18)
      .minFrameSize(2)
      .selfValue(true)
      .transitionDuration(120)
      .title('')
      .setColorHue(measure.hue)
      .label(label)
      .sort((a, b) => b.value - a.value)
      .setColorMapper((d, original) => (focused && d.data === focused ? FOCUS_COLOUR : original))
      .setSearchMatch((d, term) => !!term && d.data.name.toLowerCase().includes(term.toLowerCase()))
      .setSearchHandler((results, sum, all) => {
        searchText = search.value
          ? `${results.length} frames match \u201c${search.value}\u201d: ${measure.format(sum)} of ${measure.format(all)} (${fmt.percent(sum, all)})`
          : '';
        details.textContent = searchText;
      })
      .setDetailsHandler((text) => { details.textContent = text || searchText; })
      .onClick((d) => { chosen.textContent = d.parent ? `Zoomed into ${label(d)}` : ''; });
    select(box).datum(tree.root).call(chart);
    if (search.value) chart.search(search.value);
    box.scrollTop = box.scrollHeight;
  }

  search.addEventListener('input', () => {
    if (!chart) return;
    if (search.value) chart.search(search.value);
    else { searchText = ''; chart.clear(); details.textContent = ''; }
  });
  panel.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') reset.click();
  });

  // The frames drawn now (zooming hides some, and the narrowest are never drawn).
  function drawnNodes() {
    return select(box).selectAll('g.frame').data();
  }
  function showCursor() {
    select(box).selectAll('g.frame').classed('kbd-cursor', (d) => d === cursor);
    cursorLine.textContent = cursor ? `Frame: ${label(cursor)}` : '';
  }
  function moveCursor(key) {
    const nodes = drawnNodes();
    if (!nodes.length) return false;
    const root = select(box).datum();
    if (!cursor || !nodes.includes(cursor)) {
      cursor = nodes.includes(root) ? root : nodes[0];
      return true;
    }
    if (key === 'Home') {
      cursor = nodes.includes(root) ? root : cursor;
    } else if (key === 'ArrowDown') {
      if (cursor.parent && nodes.includes(cursor.parent)) cursor = cursor.parent;
    } else if (key === 'ArrowUp') {
      const callees = nodes.filter((n) => n.parent === cursor);
      if (callees.length) cursor = callees.reduce((a, b) => (b.value > a.value ? b : a));
    } else {
      const row = nodes.filter((n) => n.depth === cursor.depth).sort((a, b) => a.x0 - b.x0);
      const i = row.indexOf(cursor) + (key === 'ArrowRight' ? 1 : -1);
      if (i >= 0 && i < row.length) cursor = row[i];
    }
    return true;
  }
  box.addEventListener('focus', () => {
    if (!cursor && chart) {
      moveCursor('Home');
      showCursor();
    }
  });
  box.addEventListener('keydown', (ev) => {
    if (!chart) return;
    if (['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'Home'].includes(ev.key)) {
      ev.preventDefault();
      if (moveCursor(ev.key)) showCursor();
    } else if ((ev.key === 'Enter' || ev.key === ' ') && cursor) {
      ev.preventDefault();
      chart.zoomTo(cursor);
      showCursor();
    }
  });
  reset.addEventListener('click', () => {
    search.value = '';
    searchText = '';
    focused = null;
    if (chart) {
      chart.clear();
      chart.resetZoom();
      details.textContent = '';
      chosen.textContent = '';
      if (cursor) {
        cursor = select(box).datum();
        showCursor();
      }
    }
  });

  function hierarchyNodeOf(data) {
    const root = select(box).datum();
    if (!root || typeof root.descendants !== 'function') return null;
    return root.descendants().find((n) => n.data === data) || null;
  }

  let stale = false;
  draw();
  return {
    onRange() {
      if (!measure.ranged) return;
      if (panel.hidden) stale = true;
      else draw();
    },
    onShow() {
      if (stale || Math.abs((box.clientWidth || 0) - drawnWidth) > 40) draw();
      stale = false;
    },
    /** Zooms to a site's allocating frame, switching to a measure in which the site counts. */
    focusSite(id) {
      const site = model.sites.find((s) => s.id === id);
      if (!site) return;
      const order = [measure, ...measures.filter((m) => m !== measure)];
      const m = order.find((x) => x.value(app)(site) > 0);
      if (!m) {
        chosen.textContent = `Site #${id} has nothing to show in any measure${app.range ? ' in the selected time range' : ''}.`;
        return;
      }
      if (m !== measure || !chart || stale) {
        measure = m;
        stale = false;
        draw();
      }
      focused = tree.nodeOfSite.get(id) || null;
      const node = focused && hierarchyNodeOf(focused);
      if (node) {
        // Zooming hides the siblings of the zoomed path; undo an earlier zoom first.
        for (const n of select(box).datum().descendants()) {
          n.data.hide = false;
          n.data.fade = false;
        }
        chart.zoomTo(node);
        chosen.textContent = `Site #${id}: ${label(node)} \u00b7 ${siteLocation(model, site)}`;
      }
    },
  };
}
