// Talking to the server. The tokens live in HttpOnly cookies the page never
// sees; every unsafe request echoes the CSRF cookie in X-CSRF-Token. When
// the API answers 401 the session is refreshed once (one refresh at a time
// per tab) and the request retried; if that fails the page shows the login.

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || 'http_' + status;
    this.fields = e.fields || {};
    this.details = e.details || {};
  }
}

export function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)qinba_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : '';
}

const signedOut = () => window.dispatchEvent(new Event('qinba:signedout'));

async function parse(res) {
  if (res.status === 204) return null;
  const ct = res.headers.get('Content-Type') || '';
  const body = ct.includes('json') ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

let refreshing = null;
// refresh rotates the session's tokens; concurrent callers share one call.
export function refresh() {
  if (!refreshing) {
    refreshing = fetch('/web/session/refresh', { method: 'POST', headers: { 'X-CSRF-Token': csrfToken() }, credentials: 'same-origin' })
      .then(parse)
      .finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  }
  return refreshing;
}

function headers(method, body, extra) {
  const hs = { Accept: 'application/json', ...extra };
  if (method !== 'GET' && method !== 'HEAD') hs['X-CSRF-Token'] = csrfToken();
  if (body !== undefined && !(body instanceof FormData) && !(body instanceof Blob)) hs['Content-Type'] = 'application/json';
  return hs;
}

// api(path, {method, body, headers}) → parsed JSON (or text), or throws ApiError.
export async function api(path, opts = {}) {
  const method = opts.method || (opts.body !== undefined ? 'POST' : 'GET');
  const send = () => fetch(path, {
    method,
    credentials: 'same-origin',
    headers: headers(method, opts.body, opts.headers),
    body: opts.body === undefined ? undefined
      : (opts.body instanceof FormData || opts.body instanceof Blob || typeof opts.body === 'string') ? opts.body : JSON.stringify(opts.body),
    signal: opts.signal,
  });
  let res = await send();
  if (res.status === 401 && path.startsWith('/api/')) {
    try { await refresh(); } catch (e) { signedOut(); throw new ApiError(401, { error: { code: 'unauthenticated', message: e.message } }); }
    res = await send();
    if (res.status === 401) signedOut();
  }
  return parse(res);
}

export const get = (path, signal) => api(path, { signal });
export const post = (path, body, method = 'POST') => api(path, { method, body });

export async function login(username, password) {
  return parse(await fetch('/web/session', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ username, password }),
  }));
}

export async function logout() {
  await fetch('/web/session', { method: 'DELETE', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrfToken() } }).catch(() => {});
}

// upload sends body (FormData, File or string) with XMLHttpRequest so the
// upload's progress can be shown: onProgress(fraction) as bytes go out.
export function upload(path, body, onProgress, { method = 'POST', contentType } = {}) {
  const once = () => new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open(method, path);
    x.setRequestHeader('X-CSRF-Token', csrfToken());
    x.setRequestHeader('Accept', 'application/json');
    if (contentType) x.setRequestHeader('Content-Type', contentType);
    x.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    x.onload = () => {
      let b = x.responseText;
      try { b = JSON.parse(b); } catch { /* text */ }
      resolve({ status: x.status, body: b });
    };
    x.onerror = () => reject(new ApiError(0, { error: { code: 'network', message: 'network error' } }));
    x.send(body);
  });
  return (async () => {
    let r = await once();
    if (r.status === 401) {
      try { await refresh(); } catch (e) { signedOut(); throw new ApiError(401, null); }
      r = await once();
    }
    if (r.status < 200 || r.status > 299) throw new ApiError(r.status, r.body);
    return r.body;
  })();
}

// stream follows a Server-Sent Events endpoint: onEvent(type, data, id) for
// each of the named event types; onState('live' | 'retry'). A stream the
// server closed (e.g. 401 when the access token expired) is refreshed and
// reopened from the last event id. Returns a function that stops it.
export function stream(path, types, onEvent, onState) {
  let es, stopped = false, lastId = '', wait = 1000, timer;
  const open = () => {
    const u = new URL(path, location.href);
    if (lastId) u.searchParams.set('last_event_id', lastId);
    es = new EventSource(u.pathname + u.search);
    es.onopen = () => { wait = 1000; onState && onState('live'); };
    for (const ty of types) {
      es.addEventListener(ty, (e) => {
        if (e.lastEventId) lastId = e.lastEventId;
        let d = e.data;
        try { d = JSON.parse(d); } catch { /* text */ }
        onEvent(ty, d, e.lastEventId);
      });
    }
    es.onerror = async () => {
      onState && onState('retry');
      if (es.readyState !== EventSource.CLOSED || stopped) return;
      try { await refresh(); } catch (e) { if (e.status === 401) { signedOut(); return; } }
      timer = setTimeout(() => { if (!stopped) open(); }, wait);
      wait = Math.min(wait * 2, 30000);
    };
  };
  open();
  return () => { stopped = true; clearTimeout(timer); es && es.close(); };
}
