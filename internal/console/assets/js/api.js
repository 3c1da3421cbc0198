// The console's only way to the vault: the public HTTP API, same origin.
//
// Where the session lives:
// - the access token only in this module's memory (never in web storage,
//   a cookie readable by script, or the URL);
// - the refresh token only in an HttpOnly, Secure, SameSite=Strict cookie
//   scoped to /v1/auth/console/refresh, set by the server at console login.
// A page reload restores the session by asking that endpoint for a new
// access token. Refreshes are serialised across tabs with the Web Locks
// API: two concurrent refreshes with one token would look like token reuse,
// and the server revokes the session when it sees reuse.
//
// Idle logout: the console refreshes its access token only when the person
// was active since the last refresh, and signs out after the session's idle
// timeout without activity. The server's own idle timer then agrees.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const CONSOLE_HEADER = 'X-Moonvault-Console';
const REFRESH_EARLY_MS = 30_000;

let session = null; // {token, expiresAt, idleTimeout, id, username, role, amr, auth_time}
let refreshing = null;
// epoch counts the ends of sessions: a refresh answered after the session
// it was made for has ended (signed out meanwhile) must not bring it back.
let epoch = 0;
let lastActivity = Date.now();
let lastRefresh = 0;
let refreshTimer = 0;
let idleTimer = 0;
const listeners = new Set();

/** onSession(fn): fn(session|null, message) on every sign-in, refresh and sign-out. */
export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(message) {
  for (const fn of listeners) fn(session, message);
}

export function current() {
  return session;
}

function activity() {
  lastActivity = Date.now();
}
for (const ev of ['keydown', 'pointerdown', 'wheel', 'touchstart']) {
  document.addEventListener(ev, activity, { capture: true, passive: true });
}

function adopt(body) {
  if (!body || !body.access_token) throw new ApiError(500, 'bad_answer', 'The vault answered without an access token.');
  const s = body.session || {};
  session = {
    token: body.access_token,
    expiresAt: Date.now() + (body.expires_in || 60) * 1000,
    idleTimeout: (body.idle_timeout || 3600) * 1000,
    id: s.id,
    username: s.username,
    role: s.role,
    amr: s.amr || [],
    authTime: s.auth_time,
  };
  lastRefresh = Date.now();
  schedule();
  emit();
}

function schedule() {
  clearTimeout(refreshTimer);
  clearInterval(idleTimer);
  if (!session) return;
  const wait = Math.max(1000, session.expiresAt - Date.now() - REFRESH_EARLY_MS);
  refreshTimer = setTimeout(() => {
    // Keep the session alive only for someone who is using it.
    if (session && lastActivity > lastRefresh) refresh().catch(() => session && end('Your session has ended. Sign in again.'));
  }, wait);
  idleTimer = setInterval(() => {
    if (session && Date.now() - lastActivity >= session.idleTimeout) {
      const mins = Math.round(session.idleTimeout / 60000);
      signOut(`You were signed out after ${mins >= 1 ? mins + ' minute' + (mins === 1 ? '' : 's') : Math.round(session.idleTimeout / 1000) + ' seconds'} without activity.`);
    }
  }, 1000);
}

function end(message) {
  epoch++;
  session = null;
  clearTimeout(refreshTimer);
  clearInterval(idleTimer);
  emit(message);
}

async function raw(method, path, { body, token, consoleCall } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = 'Bearer ' + token;
  if (consoleCall) headers[CONSOLE_HEADER] = '1';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'The vault could not be reached (' + e.message + ').');
  }
  let data = null;
  if (resp.status !== 204) {
    const ct = resp.headers.get('Content-Type') || '';
    data = ct.includes('json') ? await resp.json().catch(() => null) : await resp.text();
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(resp.status, e.code || 'http_' + resp.status,
      e.message || `The vault answered ${resp.status} ${resp.statusText}.`);
  }
  return { status: resp.status, data };
}

/** signIn logs in through the console route; the refresh token comes back only as a cookie. */
export async function signIn(username, password, totp) {
  const body = { username, password };
  if (totp) body.totp = totp;
  const r = await raw('POST', '/v1/auth/console/login', { body, consoleCall: true });
  activity();
  adopt(r.data);
}

function refresh() {
  if (!refreshing) {
    const at = epoch;
    const run = async () => {
      const r = await raw('POST', '/v1/auth/console/refresh', { consoleCall: true });
      if (at !== epoch) throw new ApiError(401, 'unauthenticated', 'You are signed out.');
      adopt(r.data);
    };
    const p = navigator.locks ? navigator.locks.request('moonvault-console-refresh', run) : run();
    refreshing = p.finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** restore tries the refresh cookie (page load); false when there is no live session. */
export async function restore() {
  try {
    await refresh();
    return true;
  } catch (e) {
    if (e.status === 401 || e.status === 403) return false;
    throw e;
  }
}

/** api calls the vault with the session's bearer token. It refreshes an
 * expiring token first, and once after a 401; if that fails the session is
 * over and the console shows the sign-in page. Answers {status, data}. */
export async function api(method, path, body) {
  if (!session) throw new ApiError(401, 'unauthenticated', 'You are signed out.');
  if (Date.now() > session.expiresAt - 5000) {
    try {
      await refresh();
    } catch (e) {
      end('Your session has ended. Sign in again.');
      throw e;
    }
  }
  try {
    return await raw(method, path, { body, token: session.token });
  } catch (e) {
    if (e.status !== 401 || !session) throw e;
    try {
      await refresh();
    } catch (re) {
      end('Your session has ended (signed out, revoked or expired). Sign in again.');
      throw e;
    }
    return raw(method, path, { body, token: session.token });
  }
}

/** get answers the body of a GET. */
export async function get(path) {
  return (await api('GET', path)).data;
}

/** stepUp proves a fresh one-time code for this session, for operations
 * that need a recent second factor (API keys, approvals). */
export async function stepUp(code) {
  if (!session) throw new ApiError(401, 'unauthenticated', 'You are signed out.');
  if (Date.now() > session.expiresAt - 5000) await refresh();
  const r = await raw('POST', '/v1/auth/console/step-up', { body: { code }, token: session.token, consoleCall: true });
  adopt(r.data);
}

/** signOut ends the session on the server and forgets it here. */
export async function signOut(message) {
  if (refreshing) {
    // Log out with the newest token, and never let that refresh's answer
    // sign the person back in afterwards (epoch).
    await refreshing.catch(() => {});
  }
  if (session) {
    try {
      if (Date.now() > session.expiresAt - 5000) await refresh();
      await raw('POST', '/v1/auth/console/logout', { token: session.token, consoleCall: true });
    } catch (e) {
      // The session may already be gone on the server; forget it here anyway.
    }
  }
  end(message || 'You are signed out.');
}

/** endLocally forgets a session the server already ended (e.g. this session was revoked). */
export function endLocally(message) {
  end(message);
}
