// Compare runs: the hyperparameters that differ (equal ones folded away), one overlaid chart
// per metric, and parallel coordinates of the differing hyperparameters against a final metric.
import { api } from './api.js';
import { add, h, s, link, runHref, fmtValue, flatten, statusBadge, num } from './dom.js';
import { MetricChart } from './chart.js';
import { chartControls, groupSeries } from './run.js';

const RUN_COLORS = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#dc2626', '#0891b2', '#ca8a04', '#db2777'];
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export async function comparePage(root, ctx) {
  const ids = (new URLSearchParams(location.search).get('ids') || '').split(',').filter(Boolean);
  document.title = 'Compare · em';
  if (ids.length < 1) {
    add(root, h('h1', {}, 'Compare'), h('p', { class: 'muted' }, 'Pick two or more runs in the run list.'));
    return;
  }
  const runs = await Promise.all(ids.map((id) => api(`/runs/${encodeURIComponent(id)}`, { signal: ctx.signal })));
  const series = await Promise.all(ids.map((id) => api(`/runs/${encodeURIComponent(id)}/series`, { signal: ctx.signal })));
  const label = (r, i) => `${r.name}${runs.filter((x) => x.name === r.name).length > 1 ? ` #${i + 1}` : ''}`;

  // hyperparameters
  const flat = runs.map((r) => flatten(r.hparams || {}));
  const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))].sort();
  const differ = keys.filter((k) => flat.some((f) => !same(f[k], flat[0][k])));
  const equal = keys.filter((k) => !differ.includes(k));
  const head = h('tr', {}, h('th', {}, 'hyperparameter'), runs.map((r, i) => h('th', {},
    h('span', { style: `color:${RUN_COLORS[i % RUN_COLORS.length]}` }, '■ '), link(runHref(r.id), label(r, i)), ' ', statusBadge(r.status))));
  const row = (k) => h('tr', { 'data-key': k }, h('td', { class: 'mono' }, k), flat.map((f) => h('td', {}, k in f ? fmtValue(f[k]) : '—')));
  add(root, h('h1', {}, `Compare ${runs.length} runs`),
    h('h2', {}, 'Hyperparameters that differ'),
    h('div', { class: 'scroll-x' }, h('table', { id: 'hparams-differ' }, h('thead', {}, head), h('tbody', {}, differ.map(row)))),
    differ.length ? null : h('p', { class: 'muted' }, 'None: every hyperparameter is equal.'),
    equal.length ? h('details', { id: 'hparams-equal' }, h('summary', {}, `${equal.length} equal hyperparameters`),
      h('table', {}, h('tbody', {}, equal.map((k) => h('tr', { 'data-key': k }, h('td', { class: 'mono' }, k), h('td', {}, fmtValue(flat[0][k]))))))) : null);

  // parallel coordinates
  const finals = [];
  series.forEach((sr) => sr.series.forEach((x) => {
    const k = `${x.type}/${x.name}`;
    if (!finals.includes(k)) finals.push(k);
  }));
  finals.sort();
  const pick = h('select', { id: 'final-metric' }, finals.map((k) => h('option', { value: k }, k)));
  const pcBox = h('div', { class: 'parcoords', id: 'parcoords' });
  const drawPc = () => pcBox.replaceChildren(parcoords(runs, flat, differ, series, pick.value, label));
  pick.addEventListener('change', drawPc);
  add(root, h('h2', {}, 'Parallel coordinates'), h('label', {}, 'final metric ', pick), pcBox);
  drawPc();

  // overlaid charts
  const byName = new Map();
  series.forEach((sr, ri) => {
    for (const [name, list] of groupSeries(sr.series)) {
      if (!byName.has(name)) byName.set(name, []);
      for (const x of list) byName.get(name).push({ runId: runs[ri].id, type: x.type, name, label: `${label(runs[ri], ri)} · ${x.type}`,
        color: RUN_COLORS[ri % RUN_COLORS.length] });
    }
  });
  const chartsBox = h('div', { class: 'charts', id: 'charts' });
  const opts = { x: 'step', smoothing: 0, log: false };
  let charts = [];
  add(root, h('h2', {}, 'Metrics'), chartControls((o) => charts.forEach((c) => c.setOptions(o)), false), chartsBox);
  charts = [...byName].map(([name, entries]) => new MetricChart(chartsBox, name, entries, opts, null));
  window.emConsole.charts = charts;
  await Promise.all(charts.map((c) => c.load(null, ctx.signal)));
}

function parcoords(runs, flat, keys, series, metric, label) {
  const axes = [...keys.map((k) => ({ key: k, get: (i) => flat[i][k] })),
    ...(metric ? [{ key: metric, get: (i) => {
      const x = series[i].series.find((m) => `${m.type}/${m.name}` === metric);
      return x ? num(x.last) : undefined;
    } }] : [])];
  if (axes.length < 2) return h('p', { class: 'muted' }, 'Needs at least one differing hyperparameter and a metric.');
  const W = Math.max(480, axes.length * 150), H = 260, PAD = 60;
  const scale = axes.map((ax) => {
    const vals = runs.map((_, i) => ax.get(i));
    const nums = vals.filter((v) => typeof v === 'number' && isFinite(v));
    if (nums.length === vals.filter((v) => v !== undefined).length && nums.length) {
      const lo = Math.min(...nums), hi = Math.max(...nums);
      return { pos: (v) => (typeof v === 'number' && isFinite(v) ? (hi === lo ? 0.5 : (v - lo) / (hi - lo)) : null), ticks: [[lo, 0], [hi, 1]] };
    }
    const cats = [...new Set(vals.filter((v) => v !== undefined).map((v) => JSON.stringify(v)))].sort();
    return { pos: (v) => (v === undefined ? null : cats.length === 1 ? 0.5 : cats.indexOf(JSON.stringify(v)) / (cats.length - 1)),
      ticks: cats.map((c, i) => [JSON.parse(c), cats.length === 1 ? 0.5 : i / (cats.length - 1)]) };
  });
  const x = (i) => PAD + (i * (W - 2 * PAD)) / (axes.length - 1);
  const y = (p) => H - PAD - p * (H - 2 * PAD);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'parallel coordinates' });
  axes.forEach((ax, i) => {
    svg.append(s('line', { x1: x(i), x2: x(i), y1: y(0), y2: y(1), stroke: '#94a3b8' }),
      s('text', { x: x(i), y: 16, 'text-anchor': 'middle', 'font-weight': 600, class: 'axis-label' }, ax.key));
    for (const [v, p] of scale[i].ticks) svg.append(s('text', { x: x(i) + 4, y: y(p) + 4, fill: '#475569' }, fmtValue(v)));
  });
  runs.forEach((r, ri) => {
    const pts = axes.map((ax, i) => [x(i), scale[i].pos(ax.get(ri))]).filter(([, p]) => p != null);
    svg.append(s('polyline', { points: pts.map(([a, p]) => `${a},${y(p)}`).join(' '), fill: 'none',
      stroke: RUN_COLORS[ri % RUN_COLORS.length], 'stroke-width': 2, 'data-run-id': r.id },
    s('title', {}, label(r, ri))));
  });
  return svg;
}
