// Metric charts on uPlot: several series (train/val/test of one metric, or one per run in
// compare) overlaid; x = step | epoch | time; EMA smoothing; log scale; drag to zoom (the
// detail of the zoomed range is fetched from the server, which downsamples keeping each
// bucket's min and max); double-click resets; the legend is the hover read-out.
import uPlot from '../vendor/uPlot.esm.js';
import { api } from './api.js';
import { h, num } from './dom.js';

const PALETTE = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#dc2626', '#0891b2', '#ca8a04',
  '#db2777', '#4b5563', '#65a30d'];
const TYPE_COLOR = { train: 0, val: 1, validation: 1, valid: 1, eval: 1, test: 2 };
export const MAX_POINTS = 2000;

export function colorFor(type, i) {
  return PALETTE[(TYPE_COLOR[type] ?? (3 + i)) % PALETTE.length];
}

/** Fetch one series' points (step range `range` = [lo, hi] or null for all). */
export async function fetchPoints(runId, type, name, range, signal, withLines = false) {
  const params = { type, name, x: 'step', max_points: MAX_POINTS };
  if (withLines) params.with_lines = 1;
  if (range) { params.start = Math.floor(range[0]); params.end = Math.ceil(range[1]); }
  const p = await api(`/runs/${encodeURIComponent(runId)}/series/points`, { params, signal });
  return {
    step: p.step, epoch: p.epoch, time: p.time, value: p.value.map(num),
    line: p.line || null, count: p.count, downsampled: p.downsampled,
  };
}

function xValues(pts, mode) {
  if (mode === 'time' && pts.time) return pts.time.slice();
  if (mode === 'epoch' && pts.epoch && pts.epoch.some((e) => e != null)) {
    // points inside one epoch are spread evenly over it, so the axis stays monotonic
    const xs = new Array(pts.step.length);
    let i = 0;
    while (i < xs.length) {
      let j = i;
      while (j < xs.length && pts.epoch[j] === pts.epoch[i]) j++;
      const e = pts.epoch[i] == null ? NaN : pts.epoch[i];
      const n = j - i;
      for (let k = i; k < j; k++) xs[k] = n === 1 ? e : e - 1 + (k - i + 1) / n;
      i = j;
    }
    return xs;
  }
  return pts.step.slice();
}

function smooth(ys, w) {
  if (!w) return ys;
  const out = new Array(ys.length);
  let acc = 0, norm = 0;
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (y == null || !isFinite(y)) { out[i] = y; continue; }
    acc = acc * w + (1 - w) * y;
    norm = norm * w + (1 - w);
    out[i] = acc / norm;
  }
  return out;
}

/**
 * One chart. `entries`: [{runId, type, name, label}] drawn overlaid. `opts`: {x, smoothing,
 * log}. `onPoint(entry, index, pts)` is called when a point is clicked.
 */
export class MetricChart {
  constructor(container, title, entries, opts, onPoint) {
    this.entries = entries;
    this.opts = { ...opts };
    this.onPoint = onPoint;
    this.raw = entries.map(() => null);
    this.full = null;
    this.zoomed = null;
    this.u = null;
    this.plot = h('div', { class: 'plot' });
    this.info = h('div', { class: 'hint' });
    this.el = h('div', { class: 'chart', 'data-metric': title },
      h('h3', {}, title), this.plot, this.info);
    container.append(this.el);
    this.ro = new ResizeObserver(() => {
      if (this.u) this.u.setSize(this.size());
    });
    this.ro.observe(this.plot);
    this.ticket = 0;
  }

  size() {
    const w = Math.max(200, this.plot.clientWidth || 400);
    return { width: w, height: Math.max(180, Math.min(280, Math.round(w * 0.5))) };
  }

  /** Fetch every series (whole range, or the step range `range`), then draw. */
  async load(range = null, signal) {
    const ticket = ++this.ticket;
    const raws = await Promise.all(this.entries.map((e) => fetchPoints(e.runId, e.type, e.name, range, signal, !!e.withLines)));
    if (ticket !== this.ticket) return;
    this.raw = raws;
    this.zoomed = range;
    this.draw();
  }

  setOptions(opts) {
    this.opts = { ...this.opts, ...opts };
    if (this.raw.every(Boolean)) this.draw();
  }

  /** x of every series; on the epoch axis a series logged without epochs (a final test
   * pass) takes the epoch of its step from a series of the same run that has them. */
  xs() {
    const xs = this.raw.map((pts) => xValues(pts, this.opts.x));
    if (this.opts.x !== 'epoch') return xs;
    const hasEpoch = this.raw.map((pts) => !!(pts.epoch && pts.epoch.some((e) => e != null)));
    return xs.map((x, i) => {
      if (hasEpoch[i]) return x;
      const refs = [];
      this.raw.forEach((p, j) => {
        if (hasEpoch[j] && this.entries[j].runId === this.entries[i].runId) {
          p.step.forEach((s, k) => refs.push([s, xs[j][k]]));
        }
      });
      if (!refs.length) return x;
      refs.sort((a, b) => a[0] - b[0]);
      return this.raw[i].step.map((s) => {
        let lo = 0, hi = refs.length - 1;
        if (s <= refs[0][0]) return refs[0][1] * (refs[0][0] ? s / refs[0][0] : 1);
        if (s >= refs[hi][0]) return refs[hi][1];
        while (hi - lo > 1) { const m = (lo + hi) >> 1; if (refs[m][0] <= s) lo = m; else hi = m; }
        const [s0, x0] = refs[lo], [s1, x1] = refs[hi];
        return s1 === s0 ? x0 : x0 + ((s - s0) * (x1 - x0)) / (s1 - s0);
      });
    });
  }

  data() {
    const allX = this.xs();
    const tables = this.raw.map((pts, ti) => {
      const xs = allX[ti];
      let ys = smooth(pts.value.map((v) => (v == null || !isFinite(v) ? null : v)), this.opts.smoothing);
      if (this.opts.log) ys = ys.map((v) => (v != null && v > 0 ? v : null));
      // ascending, unique x (keep the last point of equal x)
      const ox = [], oy = [];
      for (let i = 0; i < xs.length; i++) {
        if (xs[i] == null || isNaN(xs[i])) continue;
        if (ox.length && xs[i] <= ox[ox.length - 1]) {
          if (xs[i] === ox[ox.length - 1]) { oy[oy.length - 1] = ys[i]; }
          continue;
        }
        ox.push(xs[i]); oy.push(ys[i]);
      }
      return [ox, oy];
    });
    if (tables.length === 1) return tables[0];
    return uPlot.join(tables, tables.map(() => [0, 0]));
  }

  draw() {
    const data = this.data();
    const xIsTime = this.opts.x === 'time';
    const series = [{ label: this.opts.x }];
    this.entries.forEach((e, i) => series.push({
      label: e.label, stroke: e.color || colorFor(e.type, i), width: 1.5, spanGaps: true,
      points: { show: (u, si) => u.data[si].filter((v) => v != null).length < 60 },
    }));
    if (this.u) { this.u.destroy(); this.u = null; }
    const self = this;
    const opts = {
      ...this.size(),
      series,
      scales: { x: { time: xIsTime }, y: { distr: this.opts.log ? 3 : 1 } },
      axes: [{ label: xIsTime ? 'time' : this.opts.x }, {}],
      legend: { live: true },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 5) return;
          const lo = u.posToVal(u.select.left, 'x');
          const hi = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          self.zoomTo(lo, hi);
        }],
        ready: [(u) => {
          u.over.addEventListener('dblclick', () => { if (self.zoomed) self.reset(); });
          u.over.addEventListener('click', () => {
            const idx = u.cursor.idx;
            if (idx == null || !self.onPoint) return;
            const x = u.data[0][idx];
            const allX = self.xs();
            self.entries.forEach((e, i) => {
              const pts = self.raw[i];
              const xs = allX[i];
              const k = xs.indexOf(x);
              if (k >= 0) self.onPoint(e, k, pts);
            });
          });
        }],
      },
    };
    this.u = new uPlot(opts, data, this.plot);
    this.xmin = data[0].length ? data[0][0] : null;
    this.xmax = data[0].length ? data[0][data[0].length - 1] : null;
    const n = this.raw.reduce((a, p) => a + p.count, 0);
    const ds = this.raw.some((p) => p.downsampled);
    this.info.textContent = `${n.toLocaleString()} points${ds ? ' (downsampled, drag to zoom)' : ''}${this.zoomed ? ' · zoomed, double-click to reset' : ''}`;
    this.el.dataset.drawn = '1';
    this.el.dataset.series = this.entries.map((e) => e.label).join('\n');
  }

  /** Zoom to x in [lo, hi] (in the current axis' units): fetch that step range's detail. */
  async zoomTo(lo, hi) {
    let smin = Infinity, smax = -Infinity;
    const allX = this.xs();
    this.raw.forEach((pts, ti) => {
      const xs = allX[ti];
      for (let i = 0; i < xs.length; i++) {
        // include the neighbours just outside, so the lines reach the edges
        const inside = xs[i] >= lo && xs[i] <= hi;
        const near = (i + 1 < xs.length && xs[i] < lo && xs[i + 1] >= lo) || (i > 0 && xs[i] > hi && xs[i - 1] <= hi);
        if (inside || near) { smin = Math.min(smin, pts.step[i]); smax = Math.max(smax, pts.step[i]); }
      }
    });
    if (!isFinite(smin)) return;
    await this.load([smin, smax]);
    if (this.u) this.u.setScale('x', { min: lo, max: hi });
  }

  reset() { return this.load(null); }

  destroy() {
    this.ro.disconnect();
    if (this.u) this.u.destroy();
  }

  /** What is drawn, for tests: the legend's labels and each series' non-empty point count. */
  describe() {
    const labels = [...this.el.querySelectorAll('.u-legend .u-series .u-label')].map((e) => e.textContent);
    const counts = this.u ? this.u.data.slice(1).map((ys) => ys.filter((v) => v != null).length) : [];
    return { metric: this.el.dataset.metric, legend: labels.slice(1), series: this.entries.map((e) => e.label), counts,
      xmin: this.u ? this.u.scales.x.min : null, xmax: this.u ? this.u.scales.x.max : null, x: this.opts.x };
  }
}
