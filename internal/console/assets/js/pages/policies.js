import * as api from '../api.js';
import {
  html, useState, Page, Field, Select, TextArea, ErrorBox, Facts, useLoad, useAction, listOf, usePages, Pager, enc,
} from '../ui.js';
import { Intent } from './approvals.js';

const OPERATIONS = [
  ['sign-transaction', 'Sign a transaction'],
  ['sign-message', 'Sign a message'],
  ['sign-typed-data', 'Sign typed data'],
  ['sign-psbt', 'Sign a PSBT'],
];

const EXAMPLES = {
  'sign-transaction': '{"transaction": {"chainId": "0x1", "nonce": "0x0", "to": "0x3535353535353535353535353535353535353535", "value": "0xde0b6b3a7640000", "gas": "0x5208", "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1"}}',
  'sign-message': '{"data": "hello"}',
  'sign-typed-data': '{"typed_data": {}}',
  'sign-psbt': '{"psbt": ""}',
};

/** Policies: the rules every signing request meets, and the dry run. */
export function Policies() {
  const list = useLoad(() => api.get('/v1/policies'), []);
  const rows = listOf(list.data, 'policies');
  const pg = usePages(rows);
  return html`<${Page} title="Policies">
    <${ErrorBox} error=${list.error} />
    ${list.loading && !list.data && html`<p role="status">Loading policies…</p>`}
    <div class="table-wrap"><table>
      <caption class="sr-only">Policies</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Effect</th><th scope="col">Condition</th><th scope="col">Scope</th></tr></thead>
      <tbody>
        ${!list.loading && !list.error && rows.length === 0 && html`<tr><td colspan="4">No policies: every request an account's owner makes is allowed.</td></tr>`}
        ${pg.rows.map((p) => html`<tr>
          <th scope="row"><a href=${'#/policies/' + enc(p.id || p.name)}>${p.name || p.id}</a></th>
          <td data-label="Effect"><span class=${'badge ' + (p.effect || '')}>${p.effect}</span></td>
          <td data-label="Condition"><code>${p.condition}</code></td>
          <td data-label="Scope">${scope(p)}</td>
        </tr>`)}
      </tbody>
    </table></div>
    <${Pager} ...${pg} label="Policy pages" />
    <${Evaluate} />
  <//>`;
}

function scope(p) {
  const parts = [];
  if (p.accounts && p.accounts.length) parts.push('accounts ' + p.accounts.join(', '));
  if (p.owners && p.owners.length) parts.push('owners ' + p.owners.join(', '));
  return parts.length ? parts.join('; ') : 'all accounts';
}

/** Policy: one policy document. */
export function Policy({ id }) {
  const one = useLoad(() => api.get('/v1/policies/' + enc(id)), [id]);
  const p = one.data && (one.data.policy || one.data);
  return html`<${Page} title=${'Policy ' + ((p && p.name) || id)}>
    <p><a href="#/policies">← All policies</a></p>
    <${ErrorBox} error=${one.error} />
    ${p && html`<div class="card">
      <${Facts} data=${p} fields=${['id', 'name', 'effect', 'condition', 'accounts', 'owners', 'limit', 'approvals', 'version', 'created_by', 'created_at', 'updated_by', 'updated_at']} />
    </div>`}
  <//>`;
}

/** Evaluate: the dry run. It signs nothing and consumes no limit. */
function Evaluate() {
  const [account, setAccount] = useState('');
  const [operation, setOperation] = useState('sign-transaction');
  const [request, setRequest] = useState(EXAMPLES['sign-transaction']);
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
      return api.api('POST', '/v1/policies/evaluate', { account: account.trim(), operation, request: body });
    });
    if (r) setResult(r.data);
  };
  return html`<form class="card" onSubmit=${submit} aria-labelledby="eval-h">
    <h2 id="eval-h">Evaluate a request (dry run)</h2>
    <p class="hint">Shows what the policies would decide for a signing request, and why. Nothing is signed and no limit is used.</p>
    <${Field} label="Account" value=${account} onInput=${setAccount} required hint="owner/name, or a name of yours." autocapitalize="none" spellcheck="false" />
    <${Select} label="Operation" value=${operation} onInput=${onOp} options=${OPERATIONS} />
    <${TextArea} label="Request (JSON body of the sign endpoint)" value=${request} onInput=${setRequest} rows="6" class="mono" spellcheck="false" />
    <${ErrorBox} error=${act.error} />
    <div class="buttons"><button type="submit" disabled=${act.busy}>Evaluate</button></div>
    ${result && html`<div class="result" role="status">
      <h3>Decision: <span class=${'badge ' + result.decision}>${result.decision}</span></h3>
      ${listOf(result.matched, 'matched').length === 0
        ? html`<p>No policy matched.</p>`
        : html`<div class="table-wrap"><table>
          <caption>Matched policies</caption>
          <thead><tr><th scope="col">Policy</th><th scope="col">Effect</th><th scope="col">Why</th></tr></thead>
          <tbody>${listOf(result.matched, 'matched').map((m) => html`<tr><th scope="row">${m.policy}</th><td data-label="Effect">${m.effect}</td><td data-label="Why">${m.reason}</td></tr>`)}</tbody>
        </table></div>`}
      <h3>Decoded intent</h3>
      <${Intent} intent=${result.intent} />
    </div>`}
  </form>`;
}
