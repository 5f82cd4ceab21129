// Formatting of figures for display. Pure functions, no DOM.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes as "12.3 MiB"; null or undefined as an em dash. */
export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '\u2014';
  let v = Math.abs(n);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u += 1;
  }
  const digits = u === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${n < 0 ? '-' : ''}${v.toFixed(digits)} ${UNITS[u]}`;
}

/** An integer count with thousands separators. */
export function count(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '\u2014';
  return Math.round(n).toLocaleString('en-US');
}

/** Seconds as "850 ms" or "12.40 s". */
export function seconds(t) {
  if (t === null || t === undefined || Number.isNaN(t)) return '\u2014';
  if (t === 0) return '0 s';
  if (Math.abs(t) < 1) return `${(t * 1000).toFixed(t < 0.01 ? 2 : 0)} ms`;
  return `${t.toFixed(2)} s`;
}

/** Share of part in whole as "12.5%"; an em dash when whole is 0. */
export function percent(part, whole) {
  if (!whole) return '\u2014';
  const p = (100 * part) / whole;
  return `${p >= 10 || p === 0 ? p.toFixed(0) : p.toFixed(1)}%`;
}

/** An address as hex. Addresses above 2^53 lose their low bits in JSON numbers: shown as given. */
export function hex(n) {
  if (n === null || n === undefined) return '\u2014';
  return `0x${n.toString(16)}`;
}

/** The last path component. */
export function basename(path) {
  if (!path) return '';
  const i = path.lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}
