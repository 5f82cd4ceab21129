// A sortable table with keyboard navigation (roving tabindex over rows).
// Keys on a row: ArrowUp/ArrowDown, PageUp/PageDown, Home/End move; Enter activates.
// Column headers are buttons: click, Enter or Space sorts; again reverses.
import { h, emptyNote } from './dom.js';

const PAGE = 10;
const SHOWN = 300;

/**
 * columns: [{key, label, get(row), format(value, row), numeric, title}]
 * options: {sortKey, descending, onActivate(row), activateLabel, emptyText, caption}
 * Returns {el, setRows(rows)}.
 */
export function sortableTable(columns, options) {
  let rows = [];
  let sortKey = options.sortKey;
  let descending = options.descending !== false;
  let limit = SHOWN;
  const el = h('div', { class: 'table-wrap' });

  function sorted() {
    const col = columns.find((c) => c.key === sortKey) || columns[0];
    const keyed = rows.map((r) => [col.get(r), r]);
    keyed.sort((a, b) => {
      const x = a[0];
      const y = b[0];
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return descending ? -c : c;
    });
    return keyed.map((k) => k[1]);
  }

  function header() {
    return h('thead', null, h('tr', null, columns.map((c) => {
      const active = c.key === sortKey;
      return h('th', {
        scope: 'col',
        class: c.numeric ? 'num' : null,
        'aria-sort': active ? (descending ? 'descending' : 'ascending') : 'none',
      }, h('button', {
        type: 'button',
        class: 'sort',
        title: c.title || `Sort by ${c.label}`,
        onclick: () => {
          if (sortKey === c.key) descending = !descending;
          else {
            sortKey = c.key;
            descending = !!c.numeric;
          }
          render();
        },
      }, c.label, active ? (descending ? ' \u25be' : ' \u25b4') : ''));
    })));
  }

  function moveFocus(tbody, from, to) {
    const trs = tbody.rows;
    if (!trs.length) return;
    const i = Math.max(0, Math.min(trs.length - 1, to));
    if (from) from.tabIndex = -1;
    trs[i].tabIndex = 0;
    trs[i].focus();
    for (const tr of trs) tr.setAttribute('aria-selected', tr === trs[i] ? 'true' : 'false');
  }

  function render() {
    el.replaceChildren();
    if (!rows.length) {
      el.append(emptyNote(options.emptyText));
      return;
    }
    const list = sorted();
    const shown = list.slice(0, limit);
    const tbody = h('tbody', null, shown.map((r, i) => {
      const tr = h('tr', { tabindex: i === 0 ? 0 : -1, 'aria-selected': 'false' },
        columns.map((c) => h('td', { class: c.numeric ? 'num' : null },
          c.format ? c.format(c.get(r), r) : String(c.get(r)))));
      tr.rowData = r;
      return tr;
    }));
    tbody.addEventListener('keydown', (ev) => {
      const tr = ev.target.closest('tr');
      if (!tr) return;
      const i = tr.sectionRowIndex;
      const moves = { ArrowDown: i + 1, ArrowUp: i - 1, PageDown: i + PAGE, PageUp: i - PAGE, Home: 0, End: tbody.rows.length - 1 };
      if (ev.key in moves) {
        ev.preventDefault();
        moveFocus(tbody, tr, moves[ev.key]);
      } else if (ev.key === 'Enter' && options.onActivate && ev.target === tr) {
        ev.preventDefault();
        options.onActivate(tr.rowData);
      }
    });
    tbody.addEventListener('click', (ev) => {
      const tr = ev.target.closest('tr');
      if (!tr) return;
      const current = tbody.querySelector('tr[tabindex="0"]');
      if (ev.target.closest('button')) return;
      moveFocus(tbody, current, tr.sectionRowIndex);
    });
    const table = h('table', { class: 'data', role: 'grid', 'aria-label': options.caption },
      header(), tbody);
    el.append(table);
    if (list.length > shown.length) {
      el.append(h('p', { class: 'more' },
        `Showing ${shown.length.toLocaleString('en-US')} of ${list.length.toLocaleString('en-US')} rows. `,
        h('button', { type: 'button', onclick: () => { limit += SHOWN * 3; render(); } }, 'Show more')));
    }
  }

  return {
    el,
    setRows(newRows) {
      rows = newRows;
      limit = SHOWN;
      render();
    },
  };
}
