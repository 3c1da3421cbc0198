import * as api from '../api.js';
import {
  html, useState, Page, Field, ErrorBox, Notice, Facts, Time, useLoad, useAction, listOf, Pager, PAGE_SIZE,
  OneTimeCode, enc, announce,
} from '../ui.js';

/** Wallets: BIP-39/32 HD wallets. The vault makes the mnemonic from its
 * augmented entropy and never returns it; accounts are derived from a
 * wallet on the Accounts page.
 *
 * Importing a mnemonic is deliberately not offered here: 24 words typed
 * into a web page pass through the browser's autofill, spell checker and
 * extensions, and stay in the page's memory. The CLI imports one with
 * step-up (`moonvault wallet create -import`, the words in
 * MOONVAULT_MNEMONIC), or POST /v1/wallets with "mnemonic". */
export function Wallets() {
  const [cursors, setCursors] = useState(['']);
  const page = cursors.length - 1;
  const list = useLoad(() => {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursors[page]) q.set('after', cursors[page]);
    return api.get('/v1/wallets?' + q);
  }, [page]);
  const rows = listOf(list.data, 'wallets');
  const next = list.data && list.data.next;
  const setPage = (p) => setCursors(p > page ? [...cursors, next] : cursors.slice(0, p + 1));
  return html`<${Page} title="HD wallets">
    <${ErrorBox} error=${list.error} />
    ${list.loading && !list.data && html`<p role="status">Loading wallets…</p>`}
    <div class="table-wrap"><table>
      <caption class="sr-only">Your HD wallets</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Fingerprint</th><th scope="col">Origin</th><th scope="col">Created</th></tr></thead>
      <tbody>
        ${!list.loading && !list.error && rows.length === 0 && html`<tr><td colspan="4">No HD wallets.</td></tr>`}
        ${rows.map((w) => html`<tr data-wallet=${w.name}>
          <th scope="row"><a href=${'#/wallets/' + enc(w.name)}>${w.name}</a></th>
          <td class="mono" data-label="Fingerprint">${w.fingerprint || '—'}</td>
          <td data-label="Origin">${w.origin || '—'}</td>
          <td data-label="Created"><${Time} value=${w.created_at} /></td>
        </tr>`)}
      </tbody>
    </table></div>
    <${Pager} page=${page} pages=${0} hasNext=${!!next} setPage=${setPage} label="Wallet pages" />
    <${CreateWallet} onCreated=${(w) => (location.hash = '#/wallets/' + enc(w.name))} />
  <//>`;
}

function CreateWallet({ onCreated }) {
  const [name, setName] = useState('');
  const act = useAction();
  const create = async (e) => {
    e.preventDefault();
    const r = await act.run(() => api.api('POST', '/v1/wallets', { name: name.trim() }));
    if (r) {
      announce(`Wallet ${r.data.name} created`);
      onCreated(r.data);
    }
  };
  return html`<form class="card" onSubmit=${create} aria-labelledby="wallet-h">
    <h2 id="wallet-h">Create an HD wallet</h2>
    <p class="hint">A new 24-word BIP-39 mnemonic, drawn inside the vault from its augmented entropy. Neither the
      words nor the seed ever leave the vault, so they are not shown. To import an existing mnemonic use the CLI
      (<code>moonvault wallet create -import</code>, with a fresh one-time code).</p>
    <${Field} label="Wallet name" value=${name} onInput=${setName} required autocapitalize="none" spellcheck="false"
      hint="Letters, digits, '.', '_' or '-'." />
    <${ErrorBox} error=${act.error} />
    <div class="buttons"><button type="submit" disabled=${act.busy}>Create wallet</button></div>
  </form>`;
}

/** Wallet: one HD wallet, how many accounts derive from it, and deletion
 * (it destroys the seed: step-up, and refused while accounts use it). */
export function Wallet({ name }) {
  const one = useLoad(() => api.get('/v1/wallets/' + enc(name)), [name]);
  const w = one.data;
  const [code, setCode] = useState('');
  const [gone, setGone] = useState('');
  const act = useAction();
  const del = async (e) => {
    e.preventDefault();
    const r = await act.run(async () => {
      if (code.trim()) await api.stepUp(code.trim());
      return api.api('DELETE', '/v1/wallets/' + enc(name));
    });
    setCode('');
    if (r) {
      const msg = `Wallet ${name} deleted: its seed is destroyed.`;
      setGone(msg);
      announce(msg);
    }
  };
  return html`<${Page} title=${'Wallet ' + name}>
    <p><a href="#/wallets">← All HD wallets</a></p>
    <${ErrorBox} error=${one.error} />
    <${Notice}>${gone}<//>
    ${one.loading && !w && html`<p role="status">Loading…</p>`}
    ${w && !gone && html`
      <div class="card">
        <h2>Details</h2>
        <${Facts} data=${w} fields=${['name', 'owner', 'fingerprint', 'origin', 'accounts', 'created_at']}
          labels=${{ fingerprint: 'Master key fingerprint', accounts: 'Accounts derived', created_at: 'Created' }} />
        <p><a href="#/accounts">Derive an account</a> from it on the Accounts page ("Derived from an HD wallet").</p>
      </div>
      <form class="card" onSubmit=${del} aria-labelledby="wallet-del-h">
        <h2 id="wallet-del-h">Delete this wallet</h2>
        <p class="hint">Destroys the seed for good. The vault refuses while accounts derive from it (delete them
          first), and asks for a second factor within the last 10 minutes: enter a fresh code unless you just signed
          in with one.</p>
        <${OneTimeCode} value=${code} onInput=${setCode} />
        <${ErrorBox} error=${act.error} />
        <div class="buttons"><button type="submit" class="danger" disabled=${act.busy}>Delete wallet</button></div>
      </form>`}
  <//>`;
}
