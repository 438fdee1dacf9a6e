// The run list: folder tree, search, status filter, user-picked sortable columns, paging,
// selection for compare, and live status (re-polled while a run on the page is Running).
import { api, apiOr } from './api.js';
import { add, h, link, runHref, fmtTime, fmtDuration, duration, fmtValue, statusBadge, debounce, num } from './dom.js';
import { navigate, setQuery } from './main.js';

const STATUSES = ['', 'Running', 'Complete', 'Failed', 'Interrupted', 'Killed'];
const PAGE_SIZE = 50;

async function folderTree(root) {
  const t = await apiOr(null, '/folders/tree', { params: { path: root } });
  if (t) return t;
  // older servers: walk GET /folders (a few levels)
  async function walk(path, depth) {
    const f = await api('/folders', { params: { path } });
    const folders = depth > 0 ? await Promise.all(f.folders.map((c) => walk(c.path, depth - 1))) : [];
    return { path, name: path.split('/').pop(), folders };
  }
  return walk(root, 3);
}

function treeView(node, current) {
  const a = link(`/runs?folder=${encodeURIComponent(node.path)}`, node.name || node.path);
  if (node.path === current) a.classList.add('current');
  a.dataset.folder = node.path;
  return h('li', {}, a, node.folders && node.folders.length
    ? h('ul', {}, node.folders.map((c) => treeView(c, current))) : null);
}

export async function runsPage(root, ctx) {
  const qs = new URLSearchParams(location.search);
  const home = ctx.me.home || `/${ctx.me.user}`;  // em ui may name its root folder
  const st = {
    folder: qs.get('folder') || home,
    q: qs.get('q') || '',
    status: qs.get('status') || '',
    sort: qs.get('sort') || '-start',
    page: Math.max(1, parseInt(qs.get('page') || '1', 10) || 1),
    cols: (qs.get('cols') || '').split(',').filter(Boolean),
    selected: new Set(),
  };
  document.title = `${st.folder} · em`;

  // the list first; the folder tree and the column choices fill in when they arrive
  const folders = h('nav', { class: 'folders', id: 'folders' }, h('div', { class: 'muted' }, 'Folders'));
  const treeP = folderTree(home).then((tree) => {
    folders.append(h('ul', {}, treeView({ ...tree, name: tree.path || home }, st.folder)));
  });
  const columnsP = apiOr(null, '/runs/columns', { params: { folder: st.folder, recursive: true } });
  const search = h('input', { type: 'search', id: 'search', placeholder: 'Search name, label, description', value: st.q });
  const status = h('select', { id: 'status-filter' },
    STATUSES.map((s) => h('option', { value: s, selected: s === st.status }, s || 'Any status')));
  const compareBtn = h('button', { id: 'compare', disabled: true }, 'Compare');
  const colsMenu = h('div', { class: 'menu', hidden: true, id: 'columns-menu' });
  const colsBtn = h('button', { id: 'columns-button', onclick: () => { colsMenu.hidden = !colsMenu.hidden; } }, 'Columns');
  const picker = h('div', { class: 'columns-picker' }, colsBtn, colsMenu);
  const tableBox = h('div', { class: 'scroll-x', id: 'runs-table' });
  const pager = h('div', { class: 'pager', id: 'pager' });
  const count = h('span', { class: 'muted', id: 'runs-total' });

  compareBtn.addEventListener('click', () => navigate(`/compare?ids=${[...st.selected].map(encodeURIComponent).join(',')}`));
  search.addEventListener('input', debounce(() => { st.q = search.value; st.page = 1; load(); }, 250));
  status.addEventListener('change', () => { st.status = status.value; st.page = 1; load(); });

  add(root, h('div', { class: 'runs-layout' }, folders, h('section', {},
    h('h1', {}, 'Runs in ', h('span', { class: 'mono', id: 'folder-path' }, st.folder), ' ', count),
    h('div', { class: 'toolbar' }, search, status, picker, compareBtn),
    tableBox, pager)));

  const columns = () => [
    { key: 'name', title: 'Name', sort: 'name' },
    { key: 'status', title: 'Status', sort: 'status' },
    { key: 'start', title: 'Start', sort: 'start', cls: 'hide-narrow' },
    { key: 'duration', title: 'Duration', sort: 'duration' },
    ...st.cols.map((c) => ({ key: c, title: c.replace(/^(hparam|metric):/, ''), sort: c, user: true })),
  ];

  let seq = 0;
  async function load() {
    const mine = ++seq;
    setQuery({ folder: st.folder === home ? null : st.folder, q: st.q, status: st.status,
      sort: st.sort === '-start' ? null : st.sort, page: st.page > 1 ? st.page : null, cols: st.cols });
    const t0 = performance.now();
    const data = await api('/runs', { params: {
      folder: st.folder, recursive: true, q: st.q, status: st.status, sort: st.sort,
      page: st.page, page_size: PAGE_SIZE, columns: st.cols.join(','),
    }, signal: ctx.signal });
    if (mine !== seq || !ctx.alive()) return;
    draw(data);
    if (!firstPage) firstPage = data.runs;
    performance.mark('em:list-drawn', { detail: { ms: performance.now() - t0 } });
    running = data.runs.some((r) => r.status === 'Running');
  }

  function cell(run, col) {
    switch (col.key) {
      case 'name': {
        const box = h('td', {}, link(runHref(run.id), run.name));
        if (run.labels && run.labels.length) box.append(h('div', {}, run.labels.map((l) => h('span', { class: 'chip' }, l))));
        if (run.description) box.append(h('div', { class: 'muted' }, run.description.length > 120 ? run.description.slice(0, 120) + '…' : run.description));
        return box;
      }
      case 'status': return h('td', {}, statusBadge(run.status));
      case 'start': return h('td', { class: 'hide-narrow' }, fmtTime(run.start_timestamp ?? run.meta?.start_timestamp));
      case 'duration': return h('td', { class: 'num' }, fmtDuration(duration(run)));
      default: {
        let v = run.columns ? run.columns[col.key] : undefined;
        if (v === undefined && col.key.startsWith('metric:') && run.last) v = run.last[col.key.slice(7)];
        const n = num(v);
        return h('td', { class: n != null ? 'num' : '' }, fmtValue(n != null ? n : v));
      }
    }
  }

  function draw(data) {
    count.textContent = `(${data.total})`;
    const cols = columns();
    const head = h('tr', {}, h('th', {}, ''), cols.map((c) => {
      const cls = ['sortable', c.cls || ''];
      if (st.sort === c.sort) cls.push('sorted-asc');
      if (st.sort === `-${c.sort}`) cls.push('sorted-desc');
      return h('th', { class: cls.join(' '), 'data-sort': c.sort, onclick: () => {
        st.sort = st.sort === `-${c.sort}` ? c.sort : `-${c.sort}`;
        st.page = 1;
        load();
      } }, c.title);
    }));
    const rows = data.runs.map((run) => h('tr', { 'data-run-id': run.id, 'data-run-name': run.name },
      h('td', {}, h('input', { type: 'checkbox', class: 'pick', 'aria-label': 'select for compare',
        checked: st.selected.has(run.id), onchange: (ev) => {
          if (ev.target.checked) st.selected.add(run.id); else st.selected.delete(run.id);
          compareBtn.disabled = st.selected.size < 2;
          compareBtn.textContent = st.selected.size ? `Compare (${st.selected.size})` : 'Compare';
        } })),
      cols.map((c) => cell(run, c))));
    tableBox.replaceChildren(h('table', { id: 'runs' }, h('thead', {}, head), h('tbody', {}, rows)));
    if (!data.runs.length) tableBox.append(h('p', { class: 'muted', id: 'no-runs' }, 'No runs match.'));
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    pager.replaceChildren(
      h('button', { id: 'prev', disabled: st.page <= 1, onclick: () => { st.page--; load(); } }, '‹ Prev'),
      h('span', {}, `Page ${st.page} of ${pages}`),
      h('button', { id: 'next', disabled: st.page >= pages, onclick: () => { st.page++; load(); } }, 'Next ›'));
  }

  function fillColumns(available) {
  colsMenu.replaceChildren();
  const choices = [
    ...(available.hparams || []).map((k) => [`hparam:${k}`, k, 'Hyperparameters']),
    ...(available.metrics || []).map((k) => [`metric:${k}`, k, 'Metrics (last value)']),
  ];
  let group = '';
  for (const [key, label, g] of choices) {
    if (g !== group) { colsMenu.append(h('div', { class: 'muted' }, g)); group = g; }
    colsMenu.append(h('label', {}, h('input', {
      type: 'checkbox', value: key, checked: st.cols.includes(key), 'data-col': key,
      onchange: (ev) => {
        if (ev.target.checked) st.cols.push(key); else st.cols = st.cols.filter((c) => c !== key);
        load();
      },
    }), ' ', label));
  }
  if (!choices.length) colsMenu.append(h('div', { class: 'muted' }, 'No hyperparameters or metrics here yet.'));
  }

  let running = false;
  let firstPage = null;
  ctx.every(3000, () => { if (running) load(); });
  await load();
  // older servers have no /runs/columns: offer the metrics seen on this page
  const available = await columnsP || { hparams: [], metrics: [...new Set((firstPage || []).flatMap((r) => Object.keys(r.last || {})))].sort() };
  fillColumns(available);
  await treeP;
}
