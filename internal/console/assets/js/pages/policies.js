import * as api from '../api.js';
import {
  html, useState, Page, Field, Select, TextArea, ErrorBox, Facts, Time, useLoad, useAction, listOf, usePages, Pager, enc,
} from '../ui.js';
import { Intent } from './approvals.js';

const OPERATIONS = [
  ['sign-transaction', 'Sign a transaction'],
  ['sign-message', 'Sign a message'],
  ['sign-typed-data', 'Sign typed data (EIP-712)'],
  ['sign-psbt', 'Sign a PSBT (Bitcoin)'],
];

// Example bodies of the sign endpoints (api/openapi.yaml), to edit.
const EXAMPLES = {
  'sign-transaction': '{"transaction": {"chainId": "0x1", "nonce": "0x0", "to": "0x3535353535353535353535353535353535353535", "value": "0xde0b6b3a7640000", "gas": "0x5208", "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1"}}',
  'sign-message': '{"data": "hello", "encoding": "utf8"}',
  'sign-typed-data': '{"typed_data": {"types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}], "Mail": [{"name": "contents", "type": "string"}]}, "primaryType": "Mail", "domain": {"name": "Example", "chainId": 1}, "message": {"contents": "hello"}}}',
  'sign-psbt': '{"psbt": "(base64 PSBT)", "finalize": false}',
};

/** Policies: the rules every signing request meets (admins read and
 * change them; anyone may run the dry run on accounts they can sign with). */
export function Policies({ session }) {
  const admin = session && session.role === 'admin';
  return html`<${Page} title="Policies">
    ${admin
      ? html`<${PolicyList} />`
      : html`<p>Only admins see the policies. The dry run below shows what they decide for a request on an
          account you may sign with, and why.</p>`}
    <${Evaluate} admin=${admin} />
  <//>`;
}

function PolicyList() {
  const list = useLoad(() => api.get('/v1/policies'), []);
  const rows = listOf(list.data, 'policies');
  const pg = usePages(rows);
  return html`
    <${ErrorBox} error=${list.error} />
    ${list.loading && !list.data && html`<p role="status">Loading policies…</p>`}
    <div class="table-wrap"><table>
      <caption class="sr-only">Policies</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Effect</th><th scope="col">Condition</th><th scope="col">Scope</th><th scope="col">Version</th></tr></thead>
      <tbody>
        ${!list.loading && !list.error && rows.length === 0 && html`<tr><td colspan="5">No policies: every request an account's owner makes is allowed.</td></tr>`}
        ${pg.rows.map((p) => html`<tr data-policy=${p.id}>
          <th scope="row"><a href=${'#/policies/' + enc(p.id)}>${p.name}</a></th>
          <td data-label="Effect"><span class=${'badge ' + p.effect}>${p.effect}</span>${p.limit ? ' (limit)' : ''}</td>
          <td data-label="Condition"><code>${p.condition}</code></td>
          <td data-label="Scope">${scope(p)}</td>
          <td data-label="Version">${p.version}</td>
        </tr>`)}
      </tbody>
    </table></div>
    <${Pager} ...${pg} label="Policy pages" />
    <p class="hint">Policies are written with the CLI or the API (<code>moonvault policy create FILE</code>, admins,
      with a fresh one-time code); docs/policies.md is the guide.</p>`;
}

function scope(p) {
  const parts = [];
  if (p.accounts && p.accounts.length) parts.push('accounts ' + p.accounts.join(', '));
  if (p.owners && p.owners.length) parts.push('owners ' + p.owners.join(', '));
  return parts.length ? parts.join('; ') : 'all accounts';
}

/** Policy: one policy's current version, and its history. */
export function Policy({ id }) {
  const one = useLoad(() => api.get('/v1/policies/' + enc(id)), [id]);
  const versions = useLoad(() => api.get('/v1/policies/' + enc(id) + '/versions'), [id]);
  const p = one.data;
  const history = listOf(versions.data, 'versions');
  return html`<${Page} title=${'Policy ' + ((p && p.name) || id)}>
    <p><a href="#/policies">← All policies</a></p>
    <${ErrorBox} error=${one.error} />
    ${p && html`<div class="card">
      <${Facts} data=${p} fields=${['id', 'name', 'effect', 'condition', 'accounts', 'owners', 'limit', 'approvals', 'version', 'created_by', 'created_at', 'updated_by', 'updated_at']}
        labels=${{ created_at: 'Created', updated_at: 'Updated' }} />
    </div>`}
    <${ErrorBox} error=${versions.error} />
    ${history.length > 0 && html`<div class="card">
      <h2>History</h2>
      <div class="table-wrap"><table>
        <caption class="sr-only">Versions of this policy</caption>
        <thead><tr><th scope="col">Version</th><th scope="col">Change</th><th scope="col">By</th><th scope="col">When</th></tr></thead>
        <tbody>${history.map((v) => html`<tr>
          <th scope="row">${v.version}</th>
          <td data-label="Change">${v.op}${v.document ? html`: <code>${v.document.condition}</code>` : ''}</td>
          <td data-label="By">${v.by}${v.approved_by && v.approved_by.length ? ', approved by ' + v.approved_by.join(', ') : ''}</td>
          <td data-label="When"><${Time} value=${v.at} /></td>
        </tr>`)}</tbody>
      </table></div>
    </div>`}
  <//>`;
}

/** Evaluate: the dry run (POST /v1/policies/evaluate). It signs nothing
 * and consumes no limit. */
function Evaluate({ admin }) {
  const [account, setAccount] = useState('');
  const [operation, setOperation] = useState('sign-transaction');
  const [request, setRequest] = useState(EXAMPLES['sign-transaction']);
  const [principal, setPrincipal] = useState('');
  const [result, setResult] = useState(null);
  const act = useAction();
  const onOp = (op) => {
    if (request === EXAMPLES[operation]) setRequest(EXAMPLES[op]);
    setOperation(op);
  };
  const submit = async (e) => {
    e.preventDefault();
    setResult(null);
    const r = await act.run(async () => {
      let body;
      try {
        body = JSON.parse(request);
      } catch (err) {
        throw new Error('The request is not valid JSON: ' + err.message);
      }
      const q = { account: account.trim(), operation, request: body };
      if (admin && principal.trim()) q.principal = principal.trim();
      return api.api('POST', '/v1/policies/evaluate', q);
    });
    if (r) setResult(r.data);
  };
  const matched = result ? listOf(result.matched, 'matched') : [];
  return html`<form class="card" onSubmit=${submit} aria-labelledby="eval-h">
    <h2 id="eval-h">Evaluate a request (dry run)</h2>
    <p class="hint">Shows what the policies would decide for a signing request, and why. Nothing is signed and no limit is used.</p>
    <${Field} label="Account" value=${account} onInput=${setAccount} required hint="A name of yours, or owner/name." autocapitalize="none" spellcheck="false" />
    <${Select} label="Operation" value=${operation} onInput=${onOp} options=${OPERATIONS} />
    <${TextArea} label="Request (JSON body of the sign endpoint)" value=${request} onInput=${setRequest} rows="6" class="mono" spellcheck="false"
      hint=${'Ethereum transactions are a JSON object; Solana ones a base64 wire transaction: {"transaction": "AQAB…"}.'} />
    ${admin && html`<${Field} label="As principal (optional)" value=${principal} onInput=${setPrincipal} autocapitalize="none" spellcheck="false"
      hint="Admins: evaluate as another user, or apikey:ID; empty: as yourself." />`}
    <${ErrorBox} error=${act.error} />
    <div class="buttons"><button type="submit" disabled=${act.busy}>Evaluate</button></div>
    ${result && html`<div class="result" role="status" aria-labelledby="decision-h">
      <h3 id="decision-h">Decision: <span class=${'badge ' + result.decision} data-decision=${result.decision}>${result.decision}</span></h3>
      ${matched.length === 0
        ? html`<p>No policy matched.</p>`
        : html`<div class="table-wrap"><table>
          <caption>Matched policies</caption>
          <thead><tr><th scope="col">Policy</th><th scope="col">Effect</th><th scope="col">Why</th></tr></thead>
          <tbody>${matched.map((m) => html`<tr data-matched=${m.policy}>
            <th scope="row">${admin ? html`<a href=${'#/policies/' + enc(m.policy)}>${m.name || m.policy}</a>` : m.name || m.policy}${m.version ? html` <small>v${m.version}</small>` : ''}</th>
            <td data-label="Effect"><span class=${'badge ' + m.effect}>${m.effect}</span>${m.approvals ? ` (${m.approvals.threshold} of ${(m.approvals.approvers || []).join(', ')})` : ''}</td>
            <td data-label="Why">${m.reason}</td>
          </tr>`)}</tbody>
        </table></div>`}
      <h3>Decoded intent</h3>
      <${Intent} intent=${result.intent} />
    </div>`}
  </form>`;
}
