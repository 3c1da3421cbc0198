import * as api from '../api.js';
import {
  html, useState, Page, Field, ErrorBox, Time, Copy, useLoad, useAction, listOf, usePages, Pager,
  OneTimeCode, enc, announce,
} from '../ui.js';

const ACTIONS = [
  ['account.read', 'Read accounts'],
  ['account.sign', 'Sign'],
  ['account.create', 'Create accounts'],
  ['account.import', 'Import keys'],
  ['account.delete', 'Delete accounts'],
  ['wallet.read', 'Read HD wallets'],
  ['wallet.create', 'Create HD wallets'],
  ['wallet.derive', 'Derive accounts from HD wallets'],
  ['wallet.import', 'Import mnemonics'],
  ['wallet.delete', 'Delete HD wallets'],
];

/** APIKeys: keys for services, scoped to actions and accounts. The secret
 * is shown once, here, and never again (the vault keeps only its hash). */
export function APIKeys() {
  const list = useLoad(() => api.get('/v1/auth/api-keys'), []);
  const rows = listOf(list.data, 'api_keys');
  const pg = usePages(rows);
  const [created, setCreated] = useState(null);
  const revokeAct = useAction();
  const revoke = (k) => async () => {
    const r = await revokeAct.run(() => api.api('DELETE', '/v1/auth/api-keys/' + enc(k.id)));
    if (r) {
      announce(`API key ${k.name} revoked`);
      list.reload();
    }
  };
  return html`<${Page} title="API keys">
    ${created && html`<div class="card secret" role="status">
      <h2>Your new API key</h2>
      <p><strong>Copy it now: it is shown only once.</strong> Send it as the <code>X-API-Key</code> header.</p>
      <p><output class="mono secret-value" data-secret="api-key">${created.key}</output></p>
      <p><${Copy} value=${created.key} label="Copy key" /> <button type="button" class="secondary small" onClick=${() => setCreated(null)}>I have stored it</button></p>
    </div>`}
    <${ErrorBox} error=${list.error || revokeAct.error} />
    <div class="table-wrap"><table>
      <caption class="sr-only">Your API keys</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Actions</th><th scope="col">Accounts</th><th scope="col">Created</th><th scope="col"><span class="sr-only">Revoke</span></th></tr></thead>
      <tbody>
        ${!list.loading && rows.length === 0 && html`<tr><td colspan="5">No API keys.</td></tr>`}
        ${pg.rows.map((k) => html`<tr data-key=${k.id}>
          <th scope="row" id=${'key-' + k.id}>${k.name} <small class="mono">${k.id.slice(0, 8)}</small></th>
          <td data-label="Actions">${(k.actions || []).join(', ')}</td>
          <td data-label="Accounts">${(k.accounts || []).join(', ')}</td>
          <td data-label="Created"><${Time} value=${k.created_at} /></td>
          <td class="actions"><button type="button" class="danger small" aria-describedby=${'key-' + k.id} onClick=${revoke(k)} disabled=${revokeAct.busy}>Revoke</button></td>
        </tr>`)}
      </tbody>
    </table></div>
    <${Pager} ...${pg} label="API key pages" />
    <${CreateKey} onCreated=${(k) => {
      setCreated(k);
      list.reload();
    }} />
  <//>`;
}

function CreateKey({ onCreated }) {
  const [name, setName] = useState('');
  const [actions, setActions] = useState(['account.read', 'account.sign']);
  const [accounts, setAccounts] = useState('*');
  const [code, setCode] = useState('');
  const act = useAction();
  const toggle = (a) => setActions(actions.includes(a) ? actions.filter((x) => x !== a) : [...actions, a]);
  const submit = async (e) => {
    e.preventDefault();
    const body = {
      name: name.trim(),
      actions,
      accounts: accounts.split(',').map((s) => s.trim()).filter(Boolean),
    };
    const r = await act.run(async () => {
      if (code.trim()) await api.stepUp(code.trim());
      return api.api('POST', '/v1/auth/api-keys', body);
    });
    setCode('');
    if (r) {
      setName('');
      announce('API key created; copy it now');
      onCreated(r.data);
    }
  };
  return html`<form class="card" onSubmit=${submit} aria-labelledby="key-h">
    <h2 id="key-h">Create an API key</h2>
    <${Field} label="Key name" value=${name} onInput=${setName} required />
    <fieldset class="choice">
      <legend>Allowed actions</legend>
      ${ACTIONS.map(([a, l]) => html`<label><input type="checkbox" checked=${actions.includes(a)} onChange=${() => toggle(a)} /> ${l} <small class="mono">${a}</small></label>`)}
    </fieldset>
    <${Field} label="Accounts" value=${accounts} onInput=${setAccounts} hint="Account names separated by commas, or * for all of yours." />
    <${OneTimeCode} value=${code} onInput=${setCode} />
    <p class="hint">Creating a key needs a second factor within the last 10 minutes: enter a fresh code unless you just signed in with one.</p>
    <${ErrorBox} error=${act.error} />
    <div class="buttons"><button type="submit" disabled=${act.busy}>Create API key</button></div>
  </form>`;
}
