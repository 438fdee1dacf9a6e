// The run page: what the run is (status, times, description, labels, platform, git, error),
// its hyperparameters, metric charts (live while Running), artifacts, data flow and log.
import { api, apiOr } from './api.js';
import { add, h, link, artifactHref, fmtTime, fmtDuration, duration, fmtValue, statusBadge, debounce } from './dom.js';
import { MetricChart } from './chart.js';
import { hparamTree } from './tree.js';
import { loadGraph, graphView, resolveAssociations } from './graph.js';

const TYPE_ORDER = ['train', 'val', 'validation', 'valid', 'eval', 'test'];
const typeRank = (t) => (TYPE_ORDER.indexOf(t) + 1 || 99);

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v != null && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function platformCard(p) {
  if (!p) return null;
  const gpus = (p.gpus || []).map((g) => (typeof g === 'object' ? (g.name || JSON.stringify(g)) : String(g))).join(', ');
  return h('div', { class: 'card', id: 'platform' }, h('h3', {}, 'Platform'), kv([
    ['host', p.hostname],
    ['os', p.os && (p.os.platform || `${p.os.system} ${p.os.release}`)],
    ['python', p.python && `${p.python.version} (${p.python.implementation || ''})`],
    ['cpu', p.cpu && `${p.cpu.count ?? '?'} × ${p.cpu.model || '?'}`],
    ['memory', p.memory_bytes ? `${(p.memory_bytes / 2 ** 30).toFixed(1)} GiB` : null],
    ['gpus', gpus || 'none'],
    ['command', p.command && h('span', { class: 'mono' }, p.command.join(' '))],
    ['cwd', p.cwd && h('span', { class: 'mono' }, p.cwd)],
    ['packages', p.packages && Object.entries(p.packages).map(([k, v]) => `${k} ${v}`).join(', ')],
  ]));
}

function gitCard(g) {
  if (!g) return null;
  return h('div', { class: 'card', id: 'git' }, h('h3', {}, 'Git'), kv([
    ['commit', g.commit && h('span', { class: 'mono' }, g.commit)],
    ['branch', g.branch], ['dirty', g.dirty == null ? null : String(g.dirty)],
    ['remote', g.remote_url], ['entry point', g.entry_point],
  ]));
}

function errorBox(err) {
  if (!err) return null;
  const msg = typeof err === 'string' ? err : (err.message || err.type || JSON.stringify(err));
  const tb = typeof err === 'object' ? (err.traceback || err.stack) : null;
  return h('div', { class: 'card', id: 'run-error' }, h('h3', { class: 'error' }, 'Error'),
    h('p', { class: 'error' }, typeof err === 'object' && err.type ? `${err.type}: ${msg}` : msg),
    tb ? h('pre', {}, Array.isArray(tb) ? tb.join('') : String(tb)) : null);
}

export function associationLists(obj) {
  const a = obj.associations || {};
  const groups = Array.isArray(a) ? { associated: a } : a;
  const out = [];
  for (const [group, list] of Object.entries(groups)) {
    if (!Array.isArray(list) || !list.length) continue;
    out.push(h('div', { class: 'card', 'data-group': group }, h('h3', {}, group),
      h('ul', {}, list.map((x) => h('li', {},
        x.id ? link(x.kind === 'run' ? `/run/${encodeURIComponent(x.id)}` : artifactHref(x.id), x.path || x.name || x.alternative_name)
          : h('span', {}, x.name || x.alternative_name || '?', h('span', { class: 'muted' }, ' (not uploaded)')))))));
  }
  return out.length ? h('div', { class: 'cards', id: 'associations' }, out) : h('p', { class: 'muted' }, 'No artifacts in or out.');
}

/** Group series by metric name, train/val/test of one name overlaid. */
export function groupSeries(series) {
  const by = new Map();
  for (const s of series) {
    if (!by.has(s.name)) by.set(s.name, []);
    by.get(s.name).push(s);
  }
  for (const list of by.values()) list.sort((a, b) => typeRank(a.type) - typeRank(b.type) || a.type.localeCompare(b.type));
  return by;
}

export function chartControls(onChange, hasLog) {
  const x = h('select', { id: 'x-axis' }, ['step', 'epoch', 'time'].map((v) => h('option', { value: v }, v)));
  const sm = h('input', { type: 'range', id: 'smoothing', min: 0, max: 0.99, step: 0.01, value: 0 });
  const smv = h('span', { class: 'mono' }, '0');
  const lg = h('input', { type: 'checkbox', id: 'log-scale' });
  const emit = () => { smv.textContent = sm.value; onChange({ x: x.value, smoothing: +sm.value, log: lg.checked }); };
  x.addEventListener('change', emit);
  sm.addEventListener('input', debounce(emit, 60));
  lg.addEventListener('change', emit);
  return h('div', { class: 'chart-controls' }, h('label', {}, 'x-axis ', x), h('label', {}, 'smoothing ', sm, ' ', smv),
    h('label', {}, lg, ' log scale'), h('span', { class: 'muted' }, 'drag to zoom · double-click to reset'),
    hasLog ? h('span', { class: 'muted' }, ' · click a point to see its log line') : null);
}

function logView(runId, ctx) {
  const q = h('input', { type: 'search', id: 'log-search', placeholder: 'Search the log' });
  const lines = h('div', { class: 'log', id: 'log' });
  const total = h('span', { class: 'muted' });
  let hit = null;
  async function load(params) {
    const r = await api(`/runs/${encodeURIComponent(runId)}/log`, { params: { limit: 500, ...params }, signal: ctx.signal });
    total.textContent = `${r.total} lines${params.q ? ' matching' : ''}`;
    lines.replaceChildren(...r.lines.map((l) => h('div', { 'data-line': l.n, class: l.n === hit ? 'hit' : '' },
      h('span', { class: 'n' }, l.n), l.text)));
    const el = hit != null && lines.querySelector(`[data-line="${hit}"]`);
    if (el) el.scrollIntoView({ block: 'center' });
  }
  q.addEventListener('input', debounce(() => { hit = null; load({ q: q.value }); }, 250));
  return {
    el: h('div', {}, h('div', { class: 'toolbar' }, q, total), lines),
    load,
    async show(line) { hit = line; q.value = ''; await load({ start_line: Math.max(1, line - 20) }); lines.scrollIntoView({ block: 'nearest' }); },
    /** The log line of a step when the server does not know it: Caffe's "Iteration N",
     * MXNet's "Batch [N]", else the first line holding the number. */
    async find(step) {
      for (const q of [`Iteration ${step},`, `Iteration ${step} `, `Batch [${step}]`, String(step)]) {
        const r = await api(`/runs/${encodeURIComponent(runId)}/log`, { params: { q, limit: 1 } });
        if (r.lines.length) { await this.show(r.lines[0].n); return; }
      }
    },
  };
}

export async function runPage(root, ctx, id) {
  // the run, its series and whether it has a log, in parallel
  const seriesP = api(`/runs/${encodeURIComponent(id)}/series`, { signal: ctx.signal });
  const logP = apiOr(null, `/runs/${encodeURIComponent(id)}/log`, { params: { limit: 1 }, signal: ctx.signal });
  seriesP.catch(() => {});
  logP.catch(() => {});
  const run = await api(`/runs/${encodeURIComponent(id)}`, { signal: ctx.signal });
  document.title = `${run.name} · em`;
  const meta = run.meta || {};
  const start = run.start_timestamp ?? meta.start_timestamp;
  const end = run.end_timestamp ?? meta.end_timestamp;
  const statusEl = h('span', { id: 'run-status' }, statusBadge(run.status));
  const durEl = h('span', {}, fmtDuration(duration(run)));
  const endEl = h('span', {}, fmtTime(end));
  const folderLink = link(`/runs?folder=${encodeURIComponent(run.folder)}`, run.folder);

  add(root, 
    h('div', { class: 'muted' }, folderLink, ' / ', h('span', { class: 'mono' }, run.alternative_name || '')),
    h('h1', { id: 'run-name' }, run.name, ' ', statusEl),
    run.description ? h('p', { id: 'run-description' }, run.description) : null,
    run.labels && run.labels.length ? h('div', { id: 'run-labels' }, run.labels.map((l) => h('span', { class: 'chip' }, l))) : null,
    h('div', { class: 'cards' },
      h('div', { class: 'card', id: 'timing' }, h('h3', {}, 'Run'), kv([
        ['id', h('span', { class: 'mono' }, run.id)], ['path', h('span', { class: 'mono' }, run.path)],
        ['started', fmtTime(start)], ['ended', endEl], ['duration', durEl]])),
      platformCard(run.platform), gitCard(run.git)),
    errorBox(run.error));

  // hyperparameters
  add(root, h('h2', {}, 'Hyperparameters'), hparamTree(run.hparams));

  // metrics
  const chartsBox = h('div', { class: 'charts', id: 'charts' });
  const log = await logP ? logView(id, ctx) : null;
  let charts = [];
  const opts = { x: 'step', smoothing: 0, log: false };
  const onPoint = log ? (entry, k, pts) => {
    if (pts.line && pts.line[k] != null) log.show(pts.line[k]);
    else log.find(pts.step[k]);
  } : null;
  add(root, h('h2', {}, 'Metrics'), chartControls((o) => {
    Object.assign(opts, o);
    charts.forEach((c) => c.setOptions(o));
  }, !!log), chartsBox);

  let lastLen = run.metrics_length;
  let firstSeries = seriesP;
  async function drawCharts() {
    const { series } = await (firstSeries || api(`/runs/${encodeURIComponent(id)}/series`, { signal: ctx.signal }));
    firstSeries = null;
    const groups = groupSeries(series);
    const names = [...groups.keys()].join('\n');
    if (names !== chartsBox.dataset.names) {
      charts.forEach((c) => c.destroy());
      chartsBox.replaceChildren();
      chartsBox.dataset.names = names;
      charts = [...groups].map(([name, list]) => new MetricChart(chartsBox, name,
        list.map((s) => ({ runId: id, type: s.type, name: s.name, label: s.type, withLines: !!log })), opts, onPoint));
      window.emConsole.charts = charts;
    } else {
      // same metrics: a new series type may have appeared in one of them
      charts.forEach((c) => {
        const types = groups.get(c.el.dataset.metric).map((s) => s.type);
        if (types.join() !== c.entries.map((e) => e.type).join()) {
          c.entries = types.map((t) => ({ runId: id, type: t, name: c.el.dataset.metric, label: t, withLines: !!log }));
        }
      });
    }
    if (!series.length) chartsBox.replaceChildren(h('p', { class: 'muted' }, 'No metrics recorded (yet).'));
    await Promise.all(charts.filter((c) => !c.zoomed).map((c) => c.load(null, ctx.signal)));
    if (ctx.alive()) performance.mark('em:charts-drawn');
  }
  await drawCharts();
  window.emConsole.zoom = async (i, lo, hi) => { await charts[i].zoomTo(lo, hi); return charts[i].describe(); };

  // artifacts and data flow
  await resolveAssociations(run, 'run');
  add(root, h('h2', {}, 'Artifacts'), associationLists(run));
  add(root, h('h2', {}, 'Data flow'), graphView(await loadGraph(run, 'run'), run.id));
  if (log) {
    add(root, h('h2', {}, 'Log'), log.el);
    await log.load({});
  }

  // live: poll while Running; charts grow without a reload
  if (run.status === 'Running') {
    let busy = false;
    const timer = ctx.every(2000, async () => {
      if (busy) return;
      busy = true;
      try {
        const now = await api(`/runs/${encodeURIComponent(id)}`, { params: { fields: 'status,metrics_length' }, signal: ctx.signal });
        if (now.status !== run.status) {
          run.status = now.status;
          statusEl.replaceChildren(statusBadge(now.status));
          if (now.end_timestamp != null) endEl.textContent = fmtTime(now.end_timestamp);
        }
        durEl.textContent = fmtDuration(duration({ ...run, ...now, meta: now.meta || meta }));
        const grew = now.metrics_length !== lastLen;
        if (grew) {
          lastLen = now.metrics_length;
          await drawCharts();
        }
        // ended, and nothing more arrived since the last poll: stop polling
        if (now.status !== 'Running' && !grew) clearInterval(timer);
      } finally {
        busy = false;
      }
    });
  }
}
