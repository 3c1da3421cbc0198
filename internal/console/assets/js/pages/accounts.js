import * as api from '../api.js';
import {
  html, useState, Page, Field, Select, TextArea, ErrorBox, Notice, Facts, QR, Copy, Time,
  useLoad, useAction, listOf, Pager, PAGE_SIZE, CHAINS, chainName, enc, announce,
} from '../ui.js';

const NETWORKS = [
  ['mainnet', 'Mainnet'],
  ['testnet', 'Testnet'],
  ['signet', 'Signet'],
  ['regtest', 'Regtest'],
];
const ADDRESS_TYPES = [
  ['p2wpkh', 'P2WPKH (native SegWit, bc1q…)'],
  ['p2tr', 'P2TR (Taproot, bc1p…)'],
];

/** Accounts: the caller's accounts, filtered by chain, paged with the
 * server's cursor; and the form that creates one. */
export function Accounts() {
  const [chain, setChain] = useState('');
  const [cursors, setCursors] = useState(['']);
  const page = cursors.length - 1;
  const list = useLoad(async () => {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursors[page]) q.set('after', cursors[page]);
    if (chain) q.set('chain', chain);
    return api.get('/v1/accounts?' + q);
  }, [chain, page]);
  let rows = listOf(list.data, 'accounts');
  // A server without chains ignores ?chain=: filter here too (no chain = Ethereum).
  if (chain) rows = rows.filter((a) => (a.chain || 'ethereum') === chain);
  const next = list.data && list.data.next;
  const setPage = (p) => setCursors(p > page ? [...cursors, next] : cursors.slice(0, p + 1));
  const onChain = (c) => {
    setChain(c);
    setCursors(['']);
  };

  return html`<${Page} title="Accounts">
    <div class="toolbar">
      <${Select} label="Show chain" value=${chain} onInput=${onChain} options=${[['', 'All chains'], ...CHAINS]} />
    </div>
    <${ErrorBox} error=${list.error} />
    ${list.loading && !list.data ? html`<p role="status">Loading accounts…</p>` : html`
    <div class="table-wrap">
      <table>
        <caption class="sr-only">Your accounts${chain ? ' on ' + chainName(chain) : ''}</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Chain</th><th scope="col">Address</th><th scope="col">Created</th></tr></thead>
        <tbody>
          ${rows.length === 0 && html`<tr><td colspan="4">No accounts${chain ? ' on ' + chainName(chain) : ''} yet.</td></tr>`}
          ${rows.map((a) => html`<tr>
            <th scope="row"><a href=${'#/accounts/' + enc(a.owner && a.owner !== api.current()?.username ? a.owner + ':' + a.name : a.name)}>${a.name}</a></th>
            <td data-label="Chain">${chainName(a.chain)}${a.network && a.network !== 'mainnet' ? ' (' + a.network + ')' : ''}</td>
            <td class="mono addr" data-label="Address">${a.address}</td>
            <td data-label="Created"><${Time} value=${a.created_at} /></td>
          </tr>`)}
        </tbody>
      </table>
    </div>
    <${Pager} page=${page} pages=${0} hasNext=${!!next} setPage=${setPage} label="Account pages" />`}
    <${CreateAccount} onCreated=${(a) => (location.hash = '#/accounts/' + enc(a.name))} />
  <//>`;
}

function CreateAccount({ onCreated }) {
  const [name, setName] = useState('');
  const [chain, setChain] = useState('ethereum');
  const [source, setSource] = useState('standalone');
  const [wallet, setWallet] = useState('');
  const [index, setIndex] = useState('');
  const [network, setNetwork] = useState('mainnet');
  const [addressType, setAddressType] = useState('p2wpkh');
  const act = useAction();
  const wallets = useLoad(() => api.get('/v1/wallets'), []);
  const walletList = listOf(wallets.data, 'wallets');

  const submit = async (e) => {
    e.preventDefault();
    // Only the fields that apply: an Ethereum account needs just a name, so
    // it works against any server version.
    const body = { name: name.trim() };
    if (chain !== 'ethereum') body.chain = chain;
    if (chain === 'bitcoin') {
      body.network = network;
      body.address_type = addressType;
    }
    if (source === 'wallet') {
      body.chain = chain;
      body.wallet = wallet || (walletList[0] && walletList[0].name);
      if (index.trim() !== '') body.index = Number(index);
    }
    const r = await act.run(() => api.api('POST', '/v1/accounts', body));
    if (r) {
      announce(`Account ${r.data.name} created`);
      onCreated(r.data);
    }
  };

  return html`<form class="card" onSubmit=${submit} aria-labelledby="create-account-h">
    <h2 id="create-account-h">Create an account</h2>
    <${Field} label="Account name" value=${name} onInput=${setName} required autocapitalize="none" spellcheck="false"
      hint="Letters, digits, '.', '_' or '-'." />
    <${Select} label="Chain" value=${chain} onInput=${setChain} options=${CHAINS} />
    ${chain === 'bitcoin' && html`
      <${Select} label="Network" value=${network} onInput=${setNetwork} options=${NETWORKS} />
      <${Select} label="Address type" value=${addressType} onInput=${setAddressType} options=${ADDRESS_TYPES} />`}
    <fieldset class="choice">
      <legend>Key</legend>
      <label><input type="radio" name="key-source" value="standalone" checked=${source === 'standalone'}
        onChange=${() => setSource('standalone')} /> A new standalone key</label>
      <label><input type="radio" name="key-source" value="wallet" checked=${source === 'wallet'}
        onChange=${() => setSource('wallet')} /> Derived from an HD wallet</label>
    </fieldset>
    ${source === 'wallet' && (wallets.error
      ? html`<${ErrorBox} error=${wallets.error} />`
      : walletList.length === 0
        ? html`<p class="hint">No HD wallet yet: <a href="#/wallets">create one</a> first.</p>`
        : html`
          <${Select} label="HD wallet" value=${wallet || walletList[0].name} onInput=${setWallet}
            options=${walletList.map((w) => [w.name, w.name + (w.fingerprint ? ' (' + w.fingerprint + ')' : '')])} />
          <${Field} label="Index" type="number" min="0" step="1" value=${index} onInput=${setIndex}
            hint="Optional: the next free index when empty." />`)}
    <${ErrorBox} error=${act.error} />
    <div class="buttons"><button type="submit" disabled=${act.busy}>Create account</button></div>
  </form>`;
}

const ACCOUNT_FIELDS = ['name', 'owner', 'chain', 'network', 'address_type', 'address', 'public_key',
  'wallet', 'derivation_path', 'xpub', 'created_at', 'grants'];

/** Account: one account, its address as a QR code, its provenance, and a
 * form that signs a message. */
export function Account({ name }) {
  const acc = useLoad(() => api.get('/v1/accounts/' + enc(name)), [name]);
  const a = acc.data;
  return html`<${Page} title=${'Account ' + name}>
    <p><a href="#/accounts">← All accounts</a></p>
    <${ErrorBox} error=${acc.error} />
    ${acc.loading && !a && html`<p role="status">Loading…</p>`}
    ${a && html`
      <div class="account">
        <div class="card">
          <h2>Details</h2>
          <${Facts} data=${{ ...a, chain: chainName(a.chain) }} fields=${ACCOUNT_FIELDS}
            labels=${{ xpub: 'Extended public key (xpub)', public_key: 'Public key', created_at: 'Created' }} />
          <p><${Copy} value=${a.address} label="Copy address" /></p>
        </div>
        <figure class="card qr-card">
          <${QR} text=${a.address} label=${'QR code of the address ' + a.address} />
          <figcaption class="mono addr">${a.address}</figcaption>
        </figure>
      </div>
      <${SignMessage} name=${name} account=${a} />
      <${Provenance} name=${name} />`}
  <//>`;
}

function SignMessage({ name, account }) {
  const [message, setMessage] = useState('');
  const [encoding, setEncoding] = useState('utf8');
  const [result, setResult] = useState(null);
  const act = useAction();
  const submit = async (e) => {
    e.preventDefault();
    setResult(null);
    const r = await act.run(() => api.api('POST', `/v1/accounts/${enc(name)}/sign-message`, { data: message, encoding }));
    if (r) {
      setResult(r);
      announce(r.status === 202 ? 'The request needs approval' : 'Message signed');
    }
  };
  const approval = result && result.status === 202 && result.data && (result.data.approval || result.data);
  return html`<form class="card" onSubmit=${submit} aria-labelledby="sign-h">
    <h2 id="sign-h">Sign a message</h2>
    <p class="hint">${(account.chain || 'ethereum') === 'ethereum'
      ? 'Signed as an EIP-191 personal message ("\\x19Ethereum Signed Message:\\n" + length + message).'
      : 'Signed over the raw bytes of the message.'}</p>
    <${TextArea} label="Message" value=${message} onInput=${setMessage} rows="3" />
    <${Select} label="Encoding" value=${encoding} onInput=${setEncoding} options=${[['utf8', 'Text (UTF-8)'], ['hex', 'Hex bytes']]} />
    <${ErrorBox} error=${act.error} />
    <div class="buttons"><button type="submit" disabled=${act.busy}>Sign</button></div>
    ${result && result.status !== 202 && html`<div class="result" aria-labelledby="sig-h">
      <h3 id="sig-h">Signature</h3>
      <${Facts} data=${result.data} fields=${['signature', 'message_hash']} />
      <${Copy} value=${result.data.signature} label="Copy signature" />
    </div>`}
    ${approval && html`<${Notice}>This request needs approval: <a href=${'#/approvals/' + enc(approval.id)}>approval ${approval.id}</a> (${approval.status}).<//>`}
  </form>`;
}

function Provenance({ name }) {
  const p = useLoad(() => api.get(`/v1/accounts/${enc(name)}/provenance`), [name]);
  return html`<section class="card" aria-labelledby="prov-h">
    <h2 id="prov-h">Provenance</h2>
    <p class="hint">How the key came to be, signed by the vault (verification key at /v1/sys/provenance/public-key).</p>
    ${p.loading && html`<p role="status">Loading…</p>`}
    ${p.error && (p.error.status === 404 && /endpoint/.test(p.error.message)
      ? html`<p>This vault does not publish provenance records.</p>`
      : html`<${ErrorBox} error=${p.error} />`)}
    ${p.data && html`<${Facts} data=${p.data} fields=${['origin', 'record', 'signature']} />`}
  </section>`;
}
