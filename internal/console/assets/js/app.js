// The console's frame: restore the session from the refresh cookie, route
// by the URL fragment (#/accounts, #/sessions, ...), and draw the page.
import { html, render, useState, useEffect } from '../vendor/htm-preact.mjs';
import * as api from './api.js';
import { ErrorBox, VAULT } from './ui.js';
import { SignIn } from './pages/signin.js';
import { Accounts, Account } from './pages/accounts.js';
import { Wallets, Wallet } from './pages/wallets.js';
import { Approvals, Approval } from './pages/approvals.js';
import { Policies, Policy } from './pages/policies.js';
import { Sessions } from './pages/sessions.js';
import { APIKeys } from './pages/apikeys.js';
import { MFA } from './pages/mfa.js';
import { Password } from './pages/password.js';
import { Users, System } from './pages/admin.js';

const NAV = [
  ['accounts', 'Accounts'],
  ['wallets', 'HD wallets'],
  ['approvals', 'Approvals'],
  ['policies', 'Policies'],
  ['sessions', 'Sessions'],
  ['api-keys', 'API keys'],
  ['mfa', 'Two-factor'],
  ['password', 'Password'],
];
const ADMIN_NAV = [
  ['users', 'Users'],
  ['system', 'System'],
];

/** parseRoute reads "#/accounts/treasury" as ["accounts", "treasury"]. */
function parseRoute() {
  const h = location.hash;
  if (!h.startsWith('#/')) return null; // in-page anchors (skip link) are not routes
  return h
    .slice(2)
    .split('/')
    .filter(Boolean)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
}

function useRoute() {
  const [route, setRoute] = useState(parseRoute() || ['accounts']);
  useEffect(() => {
    const on = () => {
      const r = parseRoute();
      if (r) setRoute(r.length ? r : ['accounts']);
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

function NotFound() {
  return html`<section class="page"><h1 tabindex="-1">Not found</h1><p>No such page. <a href="#/accounts">Go to accounts</a>.</p></section>`;
}

function Main({ route, session }) {
  const [top, id] = route;
  const admin = session.role === 'admin';
  switch (top) {
    case 'accounts':
      return id ? html`<${Account} name=${id} session=${session} />` : html`<${Accounts} />`;
    case 'wallets':
      return id ? html`<${Wallet} name=${id} />` : html`<${Wallets} />`;
    case 'approvals':
      return id ? html`<${Approval} id=${id} session=${session} />` : html`<${Approvals} />`;
    case 'policies':
      return id && admin ? html`<${Policy} id=${id} />` : html`<${Policies} session=${session} />`;
    case 'sessions':
      return html`<${Sessions} session=${session} />`;
    case 'api-keys':
      return html`<${APIKeys} />`;
    case 'mfa':
      return html`<${MFA} session=${session} />`;
    case 'password':
      return html`<${Password} session=${session} />`;
    case 'users':
      return admin ? html`<${Users} session=${session} />` : html`<${NotFound} />`;
    case 'system':
      return admin ? html`<${System} />` : html`<${NotFound} />`;
  }
  return html`<${NotFound} />`;
}

function Shell({ session, route }) {
  const [busy, setBusy] = useState(false);
  const items = session.role === 'admin' ? [...NAV, ...ADMIN_NAV] : NAV;
  const out = async () => {
    setBusy(true);
    await api.signOut('You signed out.');
  };
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" href="#/accounts"><img src="icon.svg" alt="" width="24" height="24" /> ${VAULT}</a>
      <div class="who">
        <span>Signed in as <strong>${session.username}</strong>${session.role === 'admin' ? ' (admin)' : ''}</span>
        <button type="button" class="secondary" onClick=${out} disabled=${busy}>Sign out</button>
      </div>
    </header>
    <nav class="nav" aria-label="Main">
      <ul>
        ${items.map(
          ([k, label]) =>
            html`<li><a href=${'#/' + k} aria-current=${route[0] === k ? 'page' : undefined}>${label}</a></li>`,
        )}
      </ul>
    </nav>
    <main id="main" tabindex="-1">
      <${Main} key=${route.join('/')} route=${route} session=${session} />
    </main>
  </div>`;
}

function App() {
  const [session, setSession] = useState(api.current());
  const [booting, setBooting] = useState(true);
  const [notice, setNotice] = useState('');
  const [error, setError] = useState(null);
  const route = useRoute();
  useEffect(
    () =>
      api.onSession((s, message) => {
        setSession(s ? { ...s } : null);
        if (!s && message) setNotice(message);
        if (s) setNotice('');
      }),
    [],
  );
  useEffect(() => {
    api
      .restore()
      .catch((e) => setError(e))
      .finally(() => setBooting(false));
  }, []);
  if (booting) return html`<p class="boot" role="status">Restoring your session…</p>`;
  if (!session) return html`<${SignIn} notice=${notice} error=${error} />`;
  return html`<${Shell} session=${session} route=${route} />`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
