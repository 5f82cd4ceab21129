// Summary: the key figures of the run and a short list of what to look at first, each
// finding linking to the view that explains it.
import { h, emptyNote } from './dom.js';
import { siteFrame } from './model.js';
import * as fmt from './format.js';

function topSite(model, key) {
  let best = null;
  for (const s of model.sites) if (s[key] > 0 && (!best || s[key] > best[key])) best = s;
  return best;
}

function fnName(model, site) {
  const f = site && siteFrame(model, site);
  return f ? f.function : '??';
}

/** Findings in order of importance: [{severity, text, view, site?}]. */
export function findings(model) {
  const s = model.summary;
  const out = [];
  if (model.meta.exit_status !== null && model.meta.exit_status !== 0) {
    out.push({ severity: 'warn', text: `The program exited with status ${model.meta.exit_status}: the figures describe a run that failed.` });
  }
  if (s.leaked_bytes > 0) {
    const top = topSite(model, 'leaked_bytes');
    out.push({
      severity: 'bad', view: 'leaks',
      text: `${fmt.bytes(s.leaked_bytes)} leaked in ${fmt.count(s.leaked_blocks)} blocks never freed` +
        (top ? `; the largest share (${fmt.bytes(top.leaked_bytes)}) comes from ${fnName(model, top)}.` : '.'),
    });
  }
  const peakTop = topSite(model, 'peak_bytes');
  if (s.peak_live_bytes > 0 && peakTop) {
    out.push({
      severity: 'info', view: 'flame', site: peakTop.id,
      text: `At the heap peak (${fmt.bytes(s.peak_live_bytes)} at ${fmt.seconds(s.peak_time)}), ${fnName(model, peakTop)} held ` +
        `${fmt.bytes(peakTop.peak_bytes)} (${fmt.percent(peakTop.peak_bytes, s.peak_live_bytes)}).`,
    });
  }
  if (s.peak_rss > 0 && s.peak_live_bytes > 0 && s.peak_live_bytes < 0.5 * s.peak_rss) {
    out.push({
      severity: 'info', view: 'resident',
      text: `Live heap is only ${fmt.percent(s.peak_live_bytes, s.peak_rss)} of the peak RSS (${fmt.bytes(s.peak_rss)}): the resident split shows where the rest is.`,
    });
  }
  if (s.allocation_calls > 0 && s.temporary_allocations / s.allocation_calls >= 0.1) {
    const top = topSite(model, 'temporary');
    out.push({
      severity: 'warn', view: 'flame', site: top ? top.id : undefined,
      text: `${fmt.percent(s.temporary_allocations, s.allocation_calls)} of allocations are temporary (freed before the next allocation)` +
        (top ? `; most from ${fnName(model, top)} (${fmt.count(top.temporary)}).` : '.'),
    });
  }
  if (s.realloc_bytes_copied > 0) {
    const top = topSite(model, 'copied_bytes');
    out.push({
      severity: 'warn', view: 'copies',
      text: `realloc moved ${fmt.count(s.realloc_moves)} of ${fmt.count(s.realloc_calls)} blocks, copying ${fmt.bytes(s.realloc_bytes_copied)}` +
        (top ? `; top site ${fnName(model, top)} (${fmt.bytes(top.copied_bytes)}).` : '.'),
    });
  }
  for (const w of model.warnings) out.push({ severity: 'warn', text: `Warning: ${w}` });
  return out;
}

function card(label, value, sub) {
  return h('div', { class: 'card' }, h('div', { class: 'card-label' }, label), h('div', { class: 'card-value' }, value), sub ? h('div', { class: 'card-sub' }, sub) : null);
}

export function summaryView(panel, app) {
  const { model } = app;
  const s = model.summary;
  panel.append(h('h2', null, 'Summary'));
  if (!s.present) {
    panel.append(emptyNote('This report has no allocation summary.'));
  } else {
    panel.append(h('div', { class: 'cards' },
      card('Peak RSS', fmt.bytes(s.peak_rss), 'resident set, highest sample'),
      card('Peak live heap', fmt.bytes(s.peak_live_bytes), `at ${fmt.seconds(s.peak_time)}`),
      card('Allocated', fmt.bytes(s.bytes_allocated), `${fmt.count(s.allocation_calls)} calls, ${fmt.count(s.free_calls)} frees`),
      card('Leaked', fmt.bytes(s.leaked_bytes), `${fmt.count(s.leaked_blocks)} blocks`),
      s.temporary_allocations === null
        ? card('Temporary', fmt.count(null), 'not known in a sampled trace')
        : card('Temporary', fmt.count(s.temporary_allocations), `${fmt.percent(s.temporary_allocations, s.allocation_calls)} of allocations`),
      card('realloc', fmt.bytes(s.realloc_bytes_copied), `copied in ${fmt.count(s.realloc_moves)} moves of ${fmt.count(s.realloc_calls)} calls`),
      card('Sites', fmt.count(model.sites.length), `${fmt.count(model.threads.length)} threads`),
      card('Duration', fmt.seconds(model.meta.duration), model.meta.exit_status === null ? '' : `exit status ${model.meta.exit_status}`),
    ));
  }
  panel.append(h('h3', null, 'What to look at first'));
  const list = findings(model);
  if (!list.length) {
    panel.append(emptyNote('Nothing stands out: no leaks, no heavy copying, few temporaries.'));
  } else {
    panel.append(h('ul', { class: 'findings' }, list.map((f) => h('li', { class: `finding ${f.severity}` },
      h('span', null, f.text),
      f.view ? h('button', {
        type: 'button', class: 'link',
        onclick: () => (f.site !== undefined ? app.openSite(f.site) : app.show(f.view)),
      }, f.view === 'flame' ? 'Show in flame graph' : `Open ${f.view}`) : null))));
  }
  return {};
}
