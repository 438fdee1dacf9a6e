// The console's only way to the server: /api/v1 with the session cookie (same origin).

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}

export function apiUrl(path, params) {
  const url = new URL('/api/v1' + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v != null && v !== '') url.searchParams.set(k, String(v));
  }
  return url.pathname + url.search;
}

/** Call the API; resolves to the parsed JSON (null for 204), rejects with ApiError. */
export async function api(path, { method = 'GET', params, body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['X-EM-CSRF'] = cookie('em_csrf');
  const resp = await fetch(apiUrl(path, params), {
    method, headers, credentials: 'same-origin', signal,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  let data = null;
  try { data = await resp.json(); } catch { data = null; }
  if (!resp.ok) {
    const detail = data && typeof data.detail === 'string' ? data.detail : resp.statusText;
    throw new ApiError(resp.status, detail);
  }
  return data;
}

/** Like api() but answers `fallback` for a 404 (an endpoint or object that is not there). */
export async function apiOr(fallback, path, opts) {
  try {
    return await api(path, opts);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return fallback;
    throw e;
  }
}
