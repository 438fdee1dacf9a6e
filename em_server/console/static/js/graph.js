// The data-flow graph: runs and artifacts as nodes, mark_input/mark_output as edges, laid out
// in columns by longest path (inputs on the left). Click a node to open it.
import { api, apiOr } from './api.js';
import { h, s, runHref, artifactHref } from './dom.js';
import { navigate } from './main.js';

/**
 * Give each association entry of `obj` ("inputs"/"outputs" of a run, "input_of"/"output_of"
 * of an artifact) its "id" and "path" when the server did not resolve it: looked up by name in
 * the object's own folder (where `em upload` puts a run's artifacts), matched on
 * alternative_name.
 */
export async function resolveAssociations(obj, kind) {
  const assoc = obj.associations || {};
  const groups = Array.isArray(assoc) ? [assoc] : Object.values(assoc);
  const folder = obj.folder || (obj.path ? obj.path.slice(0, obj.path.lastIndexOf('/')) : '');
  const jobs = [];
  for (const list of groups) {
    for (const a of Array.isArray(list) ? list : []) {
      if (!a || a.id || !folder) continue;
      const other = a.kind || (kind === 'run' ? 'artifact' : 'run');
      const coll = other === 'run' ? 'runs' : 'artifacts';
      jobs.push((async () => {
        for (const name of [a.name, a.alternative_name]) {
          if (!name) continue;
          const r = await apiOr(null, `/${coll}`, { params: { folder, name, page_size: 100 } });
          const hit = r && (r[coll] || []).find((x) => !a.alternative_name || x.alternative_name === a.alternative_name);
          if (hit) { a.id = hit.id; a.path = hit.path; a.kind = other; return; }
        }
      })());
    }
  }
  await Promise.all(jobs);
  return obj;
}

/** Nodes/edges from GET /graph, or (older servers) from an object's resolved associations. */
export async function loadGraph(obj, kind) {
  const g = await apiOr(null, '/graph', { params: { id: obj.id, depth: 2 } });
  if (g && g.nodes) return g;
  const nodes = [{ id: obj.id, kind, name: obj.name, path: obj.path, status: obj.status }];
  const edges = [];
  const assoc = obj.associations || {};
  const groups = Array.isArray(assoc) ? { items: assoc } : assoc;
  for (const [group, list] of Object.entries(groups)) {
    for (const a of list || []) {
      if (!a || !a.id) continue;
      const other = { id: a.id, kind: a.kind || (kind === 'run' ? 'artifact' : 'run'), name: a.name || a.alternative_name, path: a.path };
      if (!nodes.some((n) => n.id === other.id)) nodes.push(other);
      const input = /input/.test(group) || a.direction === 'input' || a.role === 'input';
      if (kind === 'run') edges.push(input ? { from: a.id, to: obj.id, kind: 'input' } : { from: obj.id, to: a.id, kind: 'output' });
      else edges.push(input ? { from: obj.id, to: a.id, kind: 'input' } : { from: a.id, to: obj.id, kind: 'output' });
    }
  }
  return { nodes, edges };
}

export function graphView(g, selfId) {
  const box = h('div', { class: 'graph', id: 'graph' });
  if (!g.nodes.length || (g.nodes.length === 1 && !g.edges.length)) {
    box.append(h('p', { class: 'muted' }, 'No inputs or outputs recorded.'));
    return box;
  }
  // longest-path layering; cycles (should not happen) are cut by the iteration bound
  const layer = new Map(g.nodes.map((n) => [n.id, 0]));
  for (let it = 0; it < g.nodes.length; it++) {
    let changed = false;
    for (const e of g.edges) {
      if (layer.has(e.from) && layer.has(e.to) && layer.get(e.to) < layer.get(e.from) + 1) {
        layer.set(e.to, layer.get(e.from) + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const cols = [];
  for (const n of g.nodes) (cols[layer.get(n.id)] ||= []).push(n);
  const W = 180, H = 40, GX = 70, GY = 18, PAD = 12;
  const pos = new Map();
  cols.forEach((col, ci) => (col || []).forEach((n, ri) => pos.set(n.id, { x: PAD + ci * (W + GX), y: PAD + ri * (H + GY) })));
  const width = PAD * 2 + cols.length * W + (cols.length - 1) * GX;
  const height = PAD * 2 + Math.max(...cols.map((c) => (c || []).length)) * (H + GY) - GY;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'data flow', style: `max-width:${width}px` },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' },
      s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#94a3b8' }))));
  for (const e of g.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    svg.append(s('path', { class: 'edge', 'data-from': e.from, 'data-to': e.to, 'data-kind': e.kind,
      d: `M ${x1} ${y1} C ${x1 + GX / 2} ${y1}, ${x2 - GX / 2} ${y2}, ${x2} ${y2}` }));
  }
  for (const n of g.nodes) {
    const p = pos.get(n.id);
    const href = n.kind === 'run' ? runHref(n.id) : artifactHref(n.id);
    const name = String(n.name ?? n.path ?? n.id);
    const node = s('g', { class: `node ${n.kind}${n.id === selfId ? ' self' : ''}`, 'data-id': n.id, 'data-kind': n.kind,
      transform: `translate(${p.x},${p.y})`, tabindex: 0, role: 'link' },
      s('title', {}, `${n.kind}: ${n.path || name}`),
      s('rect', { width: W, height: H, rx: 6 }),
      s('text', { x: 8, y: 16, 'font-size': 11, fill: '#475569' }, n.kind + (n.status ? ` · ${n.status}` : '')),
      s('text', { x: 8, y: 32, 'font-size': 13, fill: '#0f172a' }, name.length > 24 ? name.slice(0, 23) + '…' : name));
    const go = () => { if (n.id !== selfId) navigate(href); };
    node.addEventListener('click', go);
    node.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') go(); });
    svg.append(node);
  }
  box.append(svg);
  return box;
}
