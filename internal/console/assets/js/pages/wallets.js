import * as api from '../api.js';
import { html, useState, Page, Field, ErrorBox, Time, useLoad, useAction, listOf, usePages, Pager, announce } from '../ui.js';

/** Wallets: BIP-39/32 HD wallets. The vault makes the mnemonic from its
 * augmented entropy and never returns it; accounts are derived from a
 * wallet on the Accounts page. */
export function Wallets() {
  const list = useLoad(() => api.get('/v1/wallets'), []);
  const rows = listOf(list.data, 'wallets');
  const pg = usePages(rows);
  const [name, setName] = useState('');
  const act = useAction();
  const create = async (e) => {
    e.preventDefault();
    const r = await act.run(() => api.api('POST', '/v1/wallets', { name: name.trim() }));
    if (r) {
      announce(`Wallet ${name.trim()} created`);
      setName('');
      list.reload();
    }
  };
  return html`<${Page} title="HD wallets">
    <${ErrorBox} error=${list.error} />
    <div class="table-wrap"><table>
      <caption class="sr-only">HD wallets</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Fingerprint</th><th scope="col">Created</th></tr></thead>
      <tbody>
        ${!list.loading && rows.length === 0 && html`<tr><td colspan="3">No HD wallets.</td></tr>`}
        ${pg.rows.map((w) => html`<tr><th scope="row">${w.name}</th><td class="mono" data-label="Fingerprint">${w.fingerprint || '—'}</td><td data-label="Created"><${Time} value=${w.created_at} /></td></tr>`)}
      </tbody>
    </table></div>
    <${Pager} ...${pg} label="Wallet pages" />
    <form class="card" onSubmit=${create} aria-labelledby="wallet-h">
      <h2 id="wallet-h">Create an HD wallet</h2>
      <p class="hint">A new 24-word BIP-39 wallet, generated inside the vault. Its seed never leaves the vault.</p>
      <${Field} label="Wallet name" value=${name} onInput=${setName} required autocapitalize="none" spellcheck="false" />
      <${ErrorBox} error=${act.error} />
      <div class="buttons"><button type="submit" disabled=${act.busy}>Create wallet</button></div>
    </form>
  <//>`;
}
