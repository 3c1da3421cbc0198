import * as api from '../api.js';
import {
  html, useState, Page, Field, Select, TextArea, ErrorBox, Notice, Facts, QR, Copy, Time,
  useLoad, useAction, listOf, Pager, PAGE_SIZE, CHAINS, chainName, enc, announce,
} from '../ui.js';
import { verifyProvenance } from '../verify.js';

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
  const rows = listOf(list.data, 'accounts');
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
    // POST /v1/accounts {name, chain, network?, address_type?, wallet?, index?}
    const body = { name: name.trim(), chain };
    if (chain === 'bitcoin') {
      body.network = network;
      body.address_type = addressType;
    }
    const r = await act.run(async () => {
      if (source === 'wallet') {
        body.wallet = wallet || (walletList[0] && walletList[0].name);
        // Never fall back to a standalone key when a derived one was asked for.
        if (!body.wallet) throw new Error('Choose an HD wallet, or create one on the HD wallets page first.');
        const i = index.trim();
        if (i !== '') {
          if (!/^[0-9]{1,10}$/.test(i) || Number(i) > 2147483647) throw new Error('Index must be a whole number from 0 to 2147483647.');
          body.index = Number(i);
        }
      }
      return api.api('POST', '/v1/accounts', body);
    });
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
          <${Field} label="Index" inputmode="numeric" value=${index} onInput=${setIndex}
            hint=${'Optional: the next unused index on the path when empty. Path: ' + pathHint(chain, network, addressType)} />`)}
    <${ErrorBox} error=${act.error} />
    <div class="buttons"><button type="submit" disabled=${act.busy}>Create account</button></div>
  </form>`;
}

/** pathHint is the default derivation path of docs/design.md ("HD wallets"). */
function pathHint(chain, network, addressType) {
  const c = network === 'mainnet' ? 0 : 1;
  switch (chain) {
    case 'bitcoin':
      return addressType === 'p2tr' ? `m/86'/${c}'/0'/0/i (BIP-86)` : `m/84'/${c}'/0'/0/i (BIP-84)`;
    case 'solana':
      return "m/44'/501'/i'/0' (SLIP-0010)";
  }
  return "m/44'/60'/0'/0/i (BIP-44)";
}

const ACCOUNT_FIELDS = ['name', 'owner', 'chain', 'network', 'address_type', 'key_type', 'address', 'public_key',
  'wallet', 'master_fingerprint', 'derivation_path', 'xpub', 'created_at', 'grants'];

/** Account: one account, its address as a QR code, its provenance, and a
 * form that signs a message. */
export function Account({ name, session }) {
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
            labels=${{ xpub: 'Extended public key (xpub)', public_key: 'Public key', key_type: 'Key type',
              master_fingerprint: 'Wallet fingerprint', wallet: 'HD wallet', created_at: 'Created' }} />
          ${a.wallet && a.owner === (session && session.username) && html`<p><a href=${'#/wallets/' + enc(a.wallet)}>HD wallet ${a.wallet}</a></p>`}
          <p><${Copy} value=${a.address} label="Copy address" /></p>
        </div>
        <figure class="card qr-card">
          <${QR} text=${a.address} label=${'QR code of the address ' + a.address} />
          <figcaption class="mono addr">${a.address}</figcaption>
        </figure>
      </div>
      ${a.chain === 'bitcoin'
        ? html`<section class="card" aria-labelledby="sign-h"><h2 id="sign-h">Signing</h2>
            <p>Bitcoin accounts sign PSBTs, not messages: <code>POST /v1/accounts/${a.name}/sign-psbt</code>, or <code>moonvault account sign-psbt</code>.</p></section>`
        : html`<${SignMessage} name=${name} account=${a} />`}
      <${Provenance} name=${name} account=${a} />`}
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

/** Provenance shows the vault-signed record of how the key came to be, as
 * the signed payload says it (not the unsigned copy beside it), after
 * checking the signature here against the key the vault publishes. */
function Provenance({ name, account }) {
  const p = useLoad(async () => {
    const [answer, key] = await Promise.all([
      api.get(`/v1/accounts/${enc(name)}/provenance`),
      api.get('/v1/sys/provenance/public-key'),
    ]);
    return { answer, key, check: await verifyProvenance(answer, key, account) };
  }, [name, account.address]);
  const d = p.data;
  return html`<section class="card" aria-labelledby="prov-h">
    <h2 id="prov-h">Provenance</h2>
    ${p.loading && html`<p role="status">Loading and checking…</p>`}
    ${p.error && (p.error.code === 'provenance_not_recorded'
      ? html`<p>This account was made before the vault kept provenance records.</p>`
      : html`<${ErrorBox} error=${p.error} />`)}
    ${d && html`
      <p class=${'verdict ' + d.check.status} data-provenance=${d.check.status} role="status">${verdict(d)}</p>
      ${d.check.record && html`<${Facts} data=${recordView(d.check.record)}
        fields=${['origin', 'wallet', 'derivation_path', 'entropy', 'hsm_bytes', 'health', 'seal_wrapped', 'created_at', 'account', 'key_type', 'address', 'public_key']}
        labels=${{ wallet: 'HD wallet', hsm_bytes: 'HSM bytes drawn', health: 'Entropy health tests', seal_wrapped: 'Seal-wrapped', created_at: 'Created', key_type: 'Key type', public_key: 'Public key' }} />`}
      <p class="hint">Checked in this browser against the key the vault publishes at /v1/sys/provenance/public-key
        (${d.key.key_id}, <span class="mono">${d.key.public_key}</span>). To check against a copy of that key you keep,
        run <code>moonvault account provenance -verify -pin FILE ${account.name}</code>.</p>`}
  </section>`;
}

function verdict({ check, key }) {
  switch (check.status) {
    case 'verified':
      return `Verified: signed by the vault's provenance key ${key.key_id}, for this account's key.`;
    case 'unsupported':
      return `Not checked: ${check.reason}. Check it with the CLI (below).`;
  }
  return `Does NOT verify: ${check.reason}.`;
}

/** recordView flattens a provenance record for reading. */
function recordView(r) {
  const w = r.wallet;
  const e = r.entropy || {};
  const sw = r.seal_wrap || {};
  const v = {
    origin: r.origin,
    wallet: w ? `${w.name} (master key fingerprint ${w.fingerprint}, ${w.origin} seed)` : undefined,
    derivation_path: w ? w.derivation_path : undefined,
    entropy: e.mode + (e.source ? ' (' + e.source + ')' : '') + (e.drawn_for ? ', drawn for the ' + e.drawn_for : ''),
    hsm_bytes: e.hsm_bytes,
    health: e.health + (e.health_failures ? ` (${e.health_failures} failed draws since the node started)` : ''),
    seal_wrapped: sw.wrapped ? 'yes' + (sw.mechanism ? ' (' + sw.mechanism + ')' : '') : 'no',
    created_at: r.created_at,
    account: r.account,
    key_type: r.key_type,
    address: r.address,
    public_key: r.public_key,
  };
  for (const k of Object.keys(v)) if (v[k] === undefined) delete v[k];
  return v;
}
