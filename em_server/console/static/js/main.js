// The em console: a single-page app with client-side routes
//   /signin  /runs?folder=&q=&status=&sort=&page=&cols=  /run/<id>  /artifact/<id>
//   /compare?ids=a,b  and a "not found" page for anything else.
import { api, ApiError } from './api.js';
import { add, h, link } from './dom.js';
import { runsPage } from './runs.js';
import { runPage } from './run.js';
import { comparePage } from './compare.js';
import { artifactPage } from './artifact.js';

const main = document.getElementById('main');
const state = { me: undefined, page: null };

// Hooks for tests and the bench (read-only views of what is drawn).
window.emConsole = { charts: [], ready: false };

const routes = [
  [/^\/signin\/?$/, signinPage, 'signin'],
  [/^\/(runs\/?)?$/, runsPage, 'runs'],
  [/^\/run\/([^/]+)\/?$/, runPage, 'run'],
  [/^\/artifact\/([^/]+)\/?$/, artifactPage, 'artifact'],
  [/^\/compare\/?$/, comparePage, 'compare'],
];

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

/** Update the query string of the current page without a new history entry or a re-render. */
export function setQuery(params) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(params)) {
    if (v == null || v === '' || (Array.isArray(v) && !v.length)) url.searchParams.delete(k);
    else url.searchParams.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  history.replaceState(null, '', url.pathname + url.search);
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest && ev.target.closest('a[data-link]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
  ev.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', () => render());
// requests of a page the user has left are aborted on purpose
window.addEventListener('unhandledrejection', (ev) => {
  if (ev.reason && ev.reason.name === 'AbortError') ev.preventDefault();
});

async function whoami() {
  try {
    return await api('/whoami');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

function renderHeader() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  nav.replaceChildren();
  who.replaceChildren();
  if (!state.me) return;
  nav.append(link('/runs', 'Runs'));
  const name = h('span', { id: 'user-name' }, state.me.user);
  who.append(name);
  if (!state.me.local) {
    who.append(h('button', { id: 'signout', onclick: signOut }, 'Sign out'));
  } else {
    who.append(h('span', { class: 'badge' }, 'local'));
  }
}

async function signOut() {
  try { await api('/session', { method: 'DELETE' }); } catch { /* signed out either way */ }
  state.me = null;
  navigate('/signin');
}

/** A page context: `alive()` turns false when the user navigates away; timers stop then. */
function makeCtx() {
  const timers = new Set();
  const cleanups = [];
  const abort = new AbortController();
  const ctx = {
    alive: () => state.page === ctx,
    signal: abort.signal,
    me: state.me,
    every(ms, fn) {
      const t = setInterval(() => { if (ctx.alive()) fn(); }, ms);
      timers.add(t);
      return t;
    },
    onLeave(fn) { cleanups.push(fn); },
    leave() {
      for (const t of timers) clearInterval(t);
      abort.abort();
      for (const fn of cleanups) { try { fn(); } catch { /* ignore */ } }
    },
  };
  return ctx;
}

async function render() {
  if (state.page) state.page.leave();
  const ctx = makeCtx();
  state.page = ctx;
  window.emConsole.ready = false;
  window.emConsole.charts = [];
  main.removeAttribute('data-ready');
  const path = location.pathname;
  try {
    if (state.me === undefined || state.me === null) state.me = await whoami();
    ctx.me = state.me;
    renderHeader();
    if (!state.me && !/^\/signin\/?$/.test(path)) {
      const next = location.pathname + location.search;
      navigate('/signin' + (next !== '/' ? `?next=${encodeURIComponent(next)}` : ''), { replace: true });
      return;
    }
    let page = notFoundPage, name = 'notfound', args = [];
    for (const [re, fn, n] of routes) {
      const m = path.match(re);
      if (m) { page = fn; name = n; args = m.slice(1).map(decodeURIComponent); break; }
    }
    if (name === 'signin' && state.me) {
      navigate('/runs', { replace: true });
      return;
    }
    document.body.dataset.page = name;
    main.replaceChildren();
    await page(main, ctx, ...args);
  } catch (e) {
    if (!ctx.alive()) return;
    if (e instanceof ApiError && e.status === 401) {
      state.me = null;
      navigate('/signin', { replace: true });
      return;
    }
    main.replaceChildren();
    if (e instanceof ApiError && e.status === 404) {
      document.body.dataset.page = 'notfound';
      notFoundPage(main, ctx, e.detail);
    } else {
      document.body.dataset.page = 'error';
      main.append(h('div', { class: 'notfound' }, h('h1', {}, 'Something went wrong'),
        h('p', { class: 'error' }, String(e && e.message || e))));
    }
  }
  if (ctx.alive()) {
    main.dataset.ready = '1';
    window.emConsole.ready = true;
  }
}

function notFoundPage(root, _ctx, detail) {
  document.title = 'Not found · em';
  add(root, h('div', { class: 'notfound', id: 'notfound' },
    h('h1', {}, 'Not found'),
    h('p', { class: 'muted' }, detail || `Nothing at ${location.pathname}.`),
    h('p', {}, link('/runs', 'Back to the runs'))));
}

function signinPage(root) {
  document.title = 'Sign in · em';
  const key = h('input', { type: 'password', id: 'api-key', name: 'api_key', autocomplete: 'off',
    placeholder: 'em_…', required: true });
  const msg = h('p', { class: 'error', id: 'signin-error' });
  const form = h('form', { class: 'signin', id: 'signin-form' },
    h('h1', {}, 'Sign in to em'),
    h('label', { for: 'api-key' }, 'API key'), key,
    h('p', { class: 'muted' }, 'Your key is sent once; the browser then keeps a session cookie.'),
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    try {
      await api('/session', { method: 'POST', body: { api_key: key.value.trim() } });
      key.value = '';
      state.me = await whoami();
      const next = new URLSearchParams(location.search).get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/runs');
    } catch (e) {
      msg.textContent = e instanceof ApiError && e.status === 401
        ? 'That key is not valid (or was revoked).' : `Sign-in failed: ${e.message}`;
    }
  });
  add(root, form);
  key.focus();
}

render();
