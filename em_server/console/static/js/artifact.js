// The artifact page: its files as a tree (size, sha256, download), the whole artifact as a
// .tar, the runs that reference it, and its data flow.
import { api, apiUrl } from './api.js';
import { add, h, link, fmtBytes } from './dom.js';
import { loadGraph, graphView, resolveAssociations } from './graph.js';
import { associationLists } from './run.js';

function fileTree(id, objects) {
  const root = { dirs: new Map(), files: [] };
  for (const o of objects) {
    const parts = String(o.path).split('/');
    let d = root;
    for (const p of parts.slice(0, -1)) {
      if (!d.dirs.has(p)) d.dirs.set(p, { dirs: new Map(), files: [] });
      d = d.dirs.get(p);
    }
    d.files.push({ ...o, base: parts[parts.length - 1] });
  }
  const size = (d) => d.files.reduce((a, f) => a + (f.size || 0), 0) + [...d.dirs.values()].reduce((a, c) => a + size(c), 0);
  const rows = [];
  const walk = (d, depth) => {
    for (const [name, c] of [...d.dirs].sort()) {
      rows.push(h('tr', { class: 'dir' }, h('td', { style: `padding-left:${8 + depth * 16}px` }, `${name}/`),
        h('td', { class: 'num' }, fmtBytes(size(c))), h('td', {}), h('td', {})));
      walk(c, depth + 1);
    }
    for (const f of d.files.sort((a, b) => a.base.localeCompare(b.base))) {
      const href = apiUrl(`/artifacts/${encodeURIComponent(id)}/files/${String(f.path).split('/').map(encodeURIComponent).join('/')}`);
      rows.push(h('tr', { 'data-path': f.path }, h('td', { style: `padding-left:${8 + depth * 16}px` }, f.base),
        h('td', { class: 'num' }, fmtBytes(f.size)), h('td', { class: 'mono' }, f.sha256 || ''),
        h('td', {}, h('a', { href, download: f.base }, 'download'))));
    }
  };
  walk(root, 0);
  return h('div', { class: 'scroll-x' }, h('table', { id: 'files' },
    h('thead', {}, h('tr', {}, h('th', {}, 'file'), h('th', {}, 'size'), h('th', {}, 'sha256'), h('th', {}, ''))),
    h('tbody', {}, rows)));
}

export async function artifactPage(root, ctx, id) {
  const art = await api(`/artifacts/${encodeURIComponent(id)}`, { signal: ctx.signal });
  document.title = `${art.name} · em`;
  const objects = Array.isArray(art.objects) ? art.objects
    : Object.entries(art.objects || {}).map(([path, o]) => ({ path, ...o }));
  await resolveAssociations(art, 'artifact');
  const folder = art.path ? art.path.slice(0, art.path.lastIndexOf('/')) : '';
  add(root, 
    h('div', { class: 'muted' }, folder ? link(`/runs?folder=${encodeURIComponent(folder)}`, folder) : null, ' / ',
      h('span', { class: 'mono' }, art.alternative_name || '')),
    h('h1', { id: 'artifact-name' }, art.name, ' ', h('span', { class: 'badge' }, 'artifact')),
    art.description ? h('p', {}, art.description) : null,
    art.labels && art.labels.length ? h('div', {}, art.labels.map((l) => h('span', { class: 'chip' }, l))) : null,
    h('p', {}, `${objects.length} files, ${fmtBytes(objects.reduce((a, o) => a + (o.size || 0), 0))} · `,
      h('a', { href: apiUrl(`/artifacts/${encodeURIComponent(id)}/archive`), download: `${art.name}.tar`, id: 'archive' }, 'download all (.tar)')),
    h('h2', {}, 'Files'), fileTree(id, objects),
    h('h2', {}, 'References'), associationLists(art),
    h('h2', {}, 'Data flow'), graphView(await loadGraph(art, 'artifact'), art.id));
}
