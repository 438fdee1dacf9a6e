// Hyperparameters as a nested tree, filtered by a search over dotted keys and values.
import { h, fmtValue } from './dom.js';

function matches(path, v, q) {
  return !q || path.toLowerCase().includes(q) || (typeof v !== 'object' && String(v).toLowerCase().includes(q));
}

function anyMatch(path, v, q) {
  if (matches(path, v, q)) return true;
  if (v && typeof v === 'object') return Object.entries(v).some(([k, c]) => anyMatch(`${path}.${k}`, c, q));
  return false;
}

function node(key, v, path, q) {
  if (v && typeof v === 'object' && Object.keys(v).length) {
    const own = matches(path, v, q);
    const kids = Object.entries(v)
      .filter(([k, c]) => own || anyMatch(`${path}.${k}`, c, q))
      .map(([k, c]) => node(k, c, `${path}.${k}`, own ? '' : q));
    return h('li', { 'data-key': path }, h('details', { open: true },
      h('summary', {}, h('span', { class: 'key' }, key)), h('ul', {}, kids)));
  }
  return h('li', { 'data-key': path }, h('span', { class: 'key' }, key), ': ',
    h('span', { class: 'val' }, fmtValue(v)));
}

export function hparamTree(hparams) {
  const input = h('input', { type: 'search', id: 'hparam-search', placeholder: 'Find a hyperparameter' });
  const out = h('div', { class: 'tree', id: 'hparams' });
  const draw = () => {
    const q = input.value.trim().toLowerCase();
    const items = Object.entries(hparams || {}).filter(([k, v]) => anyMatch(k, v, q)).map(([k, v]) => node(k, v, k, q));
    out.replaceChildren(items.length ? h('ul', {}, items) : h('p', { class: 'muted' }, q ? 'No match.' : 'No hyperparameters.'));
  };
  input.addEventListener('input', draw);
  draw();
  return h('div', {}, input, out);
}
