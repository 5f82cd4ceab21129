// Boots the report: reads the model, draws the header and the tab bar, and mounts each view
// the first time it is shown. Views share one App: the model, the selected time range, and
// navigation between views.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { h, emptyNote } from './dom.js';
import { readModel, bucketWidth, validRange } from './model.js';
import { seconds } from './format.js';
import { summaryView } from './summary.js';
import { timelineView } from './timeline.js';
import { flameView } from './flame.js';
import { freeSitesView, siteTablesViews, threadsView } from './tables.js';
import { atlasView } from './atlas.js';
import { residentView } from './resident.js';

class App {
  constructor(model) {
    this.model = model;
    this.range = null;
    this.bucketWidth = bucketWidth(model.sites);
    this.views = [];
    this.current = null;
  }

  /** Selects time range [lo, hi] in seconds (null: the whole run) and redraws views that use it. */
  setRange(range) {
    this.range = validRange(range) ? range : null;
    const chip = document.getElementById('range-chip');
    chip.hidden = !this.range;
    document.body.dataset.range = this.range ? `${this.range[0]},${this.range[1]}` : '';
    if (this.range) {
      document.getElementById('range-text').textContent =
        `Time range ${seconds(this.range[0])} \u2013 ${seconds(this.range[1])}: tables and flame graphs count only allocations made in it`;
    }
    for (const v of this.views) {
      if (v.instance && v.instance.onRange) v.instance.onRange(this.range);
    }
  }

  /** Shows the view with the given id; mounts it on first show. */
  show(id) {
    for (const v of this.views) {
      const on = v.id === id;
      v.tab.setAttribute('aria-selected', on ? 'true' : 'false');
      v.tab.tabIndex = on ? 0 : -1;
      v.panel.hidden = !on;
      if (on) {
        this.current = v;
        if (!v.instance) {
          v.instance = v.mount(v.panel, this) || {};
        } else if (v.instance.onShow) {
          v.instance.onShow();
        }
      }
    }
  }

  /** Returns the mounted instance of a view, mounting it (hidden) if needed. */
  instance(id) {
    const v = this.views.find((x) => x.id === id);
    if (!v.instance) {
      const wasHidden = v.panel.hidden;
      v.panel.hidden = false;
      v.instance = v.mount(v.panel, this) || {};
      v.panel.hidden = wasHidden;
    }
    return v.instance;
  }

  /** Shows a site's frame in the flame graph. */
  openSite(siteId) {
    this.show('flame');
    this.instance('flame').focusSite(siteId);
  }
}

function header(model) {
  const meta = document.getElementById('meta');
  const cmd = model.meta.command.length ? model.meta.command.join(' ') : '(command not recorded)';
  const bits = [];
  if (model.meta.pid !== null) bits.push(`pid ${model.meta.pid}`);
  if (model.meta.duration !== null) bits.push(`ran ${seconds(model.meta.duration)}`);
  if (model.meta.exit_status !== null) bits.push(`exit status ${model.meta.exit_status}`);
  if (model.meta.trace) bits.push(`trace ${model.meta.trace}`);
  meta.append(h('code', { class: 'cmd', title: cmd }, cmd), h('span', { class: 'facts' }, bits.join(' \u00b7 ')));
  document.title = `memcensus: ${cmd}`;
}

function tabs(app, defs) {
  const bar = document.getElementById('tabs');
  const main = document.getElementById('views');
  for (const d of defs) {
    const tab = h('button', {
      type: 'button', role: 'tab', id: `tab-${d.id}`, 'aria-controls': `view-${d.id}`,
      'aria-selected': 'false', tabindex: -1, onclick: () => app.show(d.id),
    }, d.label);
    const panel = h('section', {
      role: 'tabpanel', id: `view-${d.id}`, 'aria-labelledby': `tab-${d.id}`, class: 'view', hidden: true,
    });
    bar.append(tab);
    main.append(panel);
    app.views.push({ ...d, tab, panel, instance: null });
  }
  bar.addEventListener('keydown', (ev) => {
    const i = app.views.indexOf(app.current);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: app.views.length - 1 }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    const v = app.views[(to + app.views.length) % app.views.length];
    app.show(v.id);
    v.tab.focus();
  });
}

function boot() {
  const { model, error } = readModel(document);
  if (error) {
    document.getElementById('views').append(emptyNote(error));
    document.body.dataset.ready = 'error';
    return;
  }
  header(model);
  const app = new App(model);
  document.getElementById('range-clear').addEventListener('click', () => app.setRange(null));
  tabs(app, [
    { id: 'summary', label: 'Summary', mount: summaryView },
    { id: 'timeline', label: 'Timeline', mount: timelineView },
    { id: 'flame', label: 'Flame graph', mount: flameView },
    ...siteTablesViews,
    ...(model.free_sites ? [{ id: 'frees', label: 'Free sites', mount: freeSitesView }] : []),
    { id: 'threads', label: 'Threads', mount: threadsView },
    { id: 'layout', label: 'Layout', mount: atlasView },
    { id: 'resident', label: 'Resident', mount: residentView },
  ]);
  app.show('summary');
  window.memcensusApp = app;
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.ready = '1';
}

boot();
