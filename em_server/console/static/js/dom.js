// DOM helpers. Everything user-supplied goes in as text nodes or attribute values, never as
// markup: there is no innerHTML anywhere in the console.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  add(el, ...children);
  return el;
}

const SVGNS = 'http://www.w3.org/2000/svg';

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  add(el, ...children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function add(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A link handled by the client-side router (see main.js). `href` is built by us, from ids. */
export function link(href, ...children) {
  return h('a', { href, 'data-link': true }, ...children);
}

export const runHref = (id) => `/run/${encodeURIComponent(id)}`;
export const artifactHref = (id) => `/artifact/${encodeURIComponent(id)}`;

/** Seconds since the epoch, or an ISO string, as a Date (null when absent or unreadable). */
export function toDate(ts) {
  if (ts == null || ts === '') return null;
  const d = typeof ts === 'number' ? new Date(ts * 1000) : new Date(ts);
  return isNaN(d.getTime()) ? null : d;
}

export function fmtTime(ts) {
  const d = toDate(ts);
  if (!d) return '—';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function duration(run) {
  if (typeof run.duration === 'number') return run.duration;
  const a = toDate(run.start_timestamp ?? run.meta?.start_timestamp);
  if (!a) return null;
  const b = toDate(run.end_timestamp ?? run.meta?.end_timestamp);
  if (b) return (b - a) / 1000;
  return run.status === 'Running' ? (Date.now() - a) / 1000 : null;
}

export function fmtDuration(sec) {
  if (sec == null || !isFinite(sec)) return '—';
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60), ss = Math.floor(sec % 60);
  if (m < 60) return `${m}m ${ss}s`;
  const hh = Math.floor(m / 60);
  return hh < 48 ? `${hh}h ${m % 60}m` : `${Math.floor(hh / 24)}d ${hh % 24}h`;
}

export function fmtValue(v) {
  if (v == null) return '—';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e6)) ? v.toExponential(4) : String(+v.toPrecision(6));
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function fmtBytes(n) {
  if (n == null) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

/** A JSON number, or one of the API's "NaN"/"Infinity"/"-Infinity" strings, as a number. */
export function num(v) {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return null;
}

export function statusBadge(status) {
  const st = String(status || 'unknown');
  return h('span', { class: `badge ${st.replace(/[^A-Za-z]/g, '')}`, 'data-status': st }, st);
}

/** Flatten nested hyperparameters to dotted keys. */
export function flatten(obj, prefix = '', out = {}) {
  if (obj && typeof obj === 'object' && !Array.isArray(obj) && Object.keys(obj).length) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = obj;
  }
  return out;
}

export function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}
