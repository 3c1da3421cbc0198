import * as api from '../api.js';
import {
  html, useState, Page, ErrorBox, Notice, Facts, Time, Value, useLoad, useAction, listOf, usePages, Pager,
  Select, OneTimeCode, enc, announce, chainName,
} from '../ui.js';

const UNITS = { ethereum: ['ETH', 18, 'wei'], bitcoin: ['BTC', 8, 'sats'], solana: ['SOL', 9, 'lamports'] };

/** amount formats base units (a decimal string) in the chain's coin. */
export function amount(value, chain) {
  const [coin, dec, base] = UNITS[chain || 'ethereum'] || ['', 0, 'units'];
  if (value === undefined || value === null || value === '') return '—';
  let v;
  try {
    v = BigInt(value);
  } catch {
    return String(value);
  }
  if (!dec) return `${v} ${base}`;
  const scale = 10n ** BigInt(dec);
  const whole = v / scale;
  const frac = (v % scale).toString().padStart(dec, '0').replace(/0+$/, '');
  return `${whole}${frac ? '.' + frac : ''} ${coin} (${v} ${base})`;
}

/** Intent shows a decoded signing request: what leaves the account, where to. */
export function Intent({ intent }) {
  if (!intent || typeof intent !== 'object') return html`<p>No decoded intent.</p>`;
  const view = { ...intent };
  if ('value' in view) view.value = amount(view.value, intent.chain);
  if (view.chain) view.chain = chainName(view.chain);
  return html`<${Facts} data=${view}
    fields=${['chain', 'network', 'kind', 'account', 'owner', 'principal', 'amr', 'chain_id', 'to', 'value', 'selector', 'token', 'outputs', 'typed_data', 'delegates']}
    labels=${{ chain_id: 'Chain ID', amr: 'Authentication methods', typed_data: 'Typed data' }} />`;
}

const STATUSES = [
  ['pending', 'Pending'],
  ['', 'All'],
  ['signed', 'Signed'],
  ['rejected', 'Rejected'],
  ['denied', 'Denied'],
  ['expired', 'Expired'],
];

/** Approvals: requests waiting for approvers (and past ones). */
export function Approvals() {
  const [status, setStatus] = useState('pending');
  const list = useLoad(() => api.get('/v1/approvals' + (status ? '?status=' + enc(status) : '')), [status]);
  const rows = listOf(list.data, 'approvals');
  const pg = usePages(rows);
  return html`<${Page} title="Approvals">
    <div class="toolbar"><${Select} label="Status" value=${status} onInput=${setStatus} options=${STATUSES} /></div>
    <${ErrorBox} error=${list.error} />
    ${list.loading && !list.data && html`<p role="status">Loading approvals…</p>`}
    ${!list.error && !list.loading && rows.length === 0 && html`<p>Nothing ${status ? status : 'here'}.</p>`}
    <ul class="cards">
      ${pg.rows.map((a) => html`<li class="card approval">
        <h2><a href=${'#/approvals/' + enc(a.id)}>${(a.operation || (a.intent && a.intent.kind) || 'Request')} on ${a.account || (a.intent && a.intent.account) || '?'}</a></h2>
        <p>Status <strong>${a.status}</strong>${a.requester ? html`, requested by <strong>${a.requester}</strong>` : ''}${a.created_at ? html`, <${Time} value=${a.created_at} />` : ''}.</p>
        <${Intent} intent=${a.intent} />
      </li>`)}
    </ul>
    <${Pager} ...${pg} label="Approval pages" />
  <//>`;
}

/** Approval: one approval, with Approve and Reject for an approver. Both
 * need a fresh second factor: the one-time code is proved first
 * (/v1/auth/console/step-up), then the decision is sent. */
export function Approval({ id, session }) {
  const one = useLoad(() => api.get('/v1/approvals/' + enc(id)), [id]);
  const [code, setCode] = useState('');
  const [done, setDone] = useState('');
  const act = useAction();
  const decide = (verb) => async () => {
    const r = await act.run(async () => {
      if (code.trim()) await api.stepUp(code.trim());
      return api.api('POST', `/v1/approvals/${enc(id)}/${verb}`);
    });
    setCode('');
    if (r) {
      const msg = verb === 'approve' ? 'You approved this request.' : 'You rejected this request.';
      setDone(msg);
      announce(msg);
      one.reload();
    }
  };
  const a = one.data && (one.data.approval || one.data);
  return html`<${Page} title=${'Approval ' + id}>
    <p><a href="#/approvals">← All approvals</a></p>
    <${ErrorBox} error=${one.error} />
    <${Notice}>${done}<//>
    ${a && html`
      <div class="card">
        <h2>Request</h2>
        <${Facts} data=${a} fields=${['id', 'status', 'account', 'operation', 'requester', 'policy', 'threshold', 'approvers', 'approvals', 'created_at', 'expires_at']}
          omit=${['intent', 'request', 'result']} />
      </div>
      <div class="card"><h2>Decoded intent</h2><${Intent} intent=${a.intent} /></div>
      ${a.request && html`<details class="card"><summary>Request body</summary><pre class="mono">${JSON.stringify(a.request, null, 2)}</pre></details>`}
      ${a.result && html`<div class="card"><h2>Result</h2><${Value} v=${a.result} /></div>`}
      ${a.status === 'pending' && html`<form class="card" onSubmit=${(e) => e.preventDefault()} aria-labelledby="decide-h">
        <h2 id="decide-h">Your decision</h2>
        <p class="hint">Approving or rejecting needs a fresh one-time code from your authenticator app${session && session.username === a.requester ? '; you cannot approve your own request' : ''}.</p>
        <${OneTimeCode} value=${code} onInput=${setCode} />
        <${ErrorBox} error=${act.error} />
        <div class="buttons">
          <button type="button" onClick=${decide('approve')} disabled=${act.busy}>Approve</button>
          <button type="button" class="danger" onClick=${decide('reject')} disabled=${act.busy}>Reject</button>
        </div>
      </form>`}`}
  <//>`;
}
