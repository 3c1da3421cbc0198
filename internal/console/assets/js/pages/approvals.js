import * as api from '../api.js';
import {
  html, useState, Page, ErrorBox, Notice, Facts, Time, useLoad, useAction, listOf, usePages, Pager,
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

/** Intent shows a decoded signing request (the policy engine's view of
 * it): what leaves the account, where to, who asks. */
export function Intent({ intent }) {
  if (!intent || typeof intent !== 'object') return html`<p>No decoded intent.</p>`;
  const view = { ...intent };
  if ('value' in view) view.value = amount(view.value, intent.chain);
  if (view.chain) view.chain = chainName(view.chain);
  if (Array.isArray(view.outputs)) {
    view.outputs = view.outputs.map((o) => ({ ...o, value: amount(o.value, intent.chain) }));
  }
  return html`<${Facts} data=${view}
    fields=${['chain', 'network', 'kind', 'account', 'owner', 'principal', 'amr', 'chain_id', 'to', 'value', 'selector', 'token', 'tokens', 'outputs', 'typed_data', 'delegates']}
    labels=${{ chain_id: 'Chain ID', amr: 'Authentication methods', typed_data: 'Typed data', to: 'To', outputs: 'Outputs (change excluded)' }} />`;
}

const STATUSES = [
  ['pending', 'Pending'],
  ['', 'All'],
  ['approved', 'Approved (signing)'],
  ['signed', 'Signed'],
  ['applied', 'Applied (policy changes)'],
  ['rejected', 'Rejected'],
  ['denied', 'Denied'],
  ['expired', 'Expired'],
];

/** title names what an approval is for: "sign-message on alice/payroll",
 * or "policy.create daily cap" for a policy change. */
export function title(a) {
  if (a.kind === 'policy_change' || a.change) {
    const c = a.change || {};
    return `${a.operation} ${(c.document && c.document.name) || c.policy || ''}`.trim();
  }
  return `${a.operation || (a.intent && a.intent.kind) || 'request'} on ${a.account || (a.intent && a.intent.account) || '?'}`;
}

/** Approvals: requests waiting for approvers (and past ones) that the
 * caller made or may vote on. */
export function Approvals() {
  const [status, setStatus] = useState('pending');
  const list = useLoad(() => api.get('/v1/approvals' + (status ? '?status=' + enc(status) : '')), [status]);
  const rows = listOf(list.data, 'approvals');
  const pg = usePages(rows);
  return html`<${Page} title="Approvals">
    <div class="toolbar"><${Select} label="Status" value=${status} onInput=${setStatus} options=${STATUSES} /></div>
    <${ErrorBox} error=${list.error} />
    ${list.loading && !list.data && html`<p role="status">Loading approvals…</p>`}
    ${!list.error && !list.loading && rows.length === 0 && html`<p>No ${status ? status + ' ' : ''}approvals for you.</p>`}
    <ul class="cards">
      ${pg.rows.map((a) => html`<li class="card approval" data-approval=${a.id}>
        <h2><a href=${'#/approvals/' + enc(a.id)}>${title(a)}</a></h2>
        <p><span class=${'badge ' + a.status}>${a.status}</span>, requested by <strong>${requester(a)}</strong>, <${Time} value=${a.created_at} />; ${needs(a)}.</p>
        ${a.intent && html`<${Intent} intent=${a.intent} />`}
      </li>`)}
    </ul>
    <${Pager} ...${pg} label="Approval pages" />
  <//>`;
}

function requester(a) {
  return a.requester_owner ? `${a.requester} (an API key of ${a.requester_owner})` : a.requester;
}

/** needs sums up the approvals still needed. */
function needs(a) {
  const got = (a.approvals || []).length;
  const reqs = a.requirements || [];
  if (reqs.length === 0) return `${got} approval${got === 1 ? '' : 's'}`;
  return reqs
    .map((r) => `${r.threshold} of ${r.any_admin ? 'any other admin' : (r.approvers || []).join(', ')}${r.name ? ' (' + r.name + ')' : ''}`)
    .join('; ') + ` needed, ${got} given`;
}

/** eligibility is why the signed-in person may not vote, or '' when they
 * may (the vault decides; this only spares a refused click). */
function eligibility(a, session) {
  const me = session.username;
  if (a.requester === me || a.requester_owner === me) return 'You made this request: another approver must decide it.';
  if ((a.approvals || []).some((v) => v.user === me)) return 'You have approved it; it waits for the other approvers.';
  const listed = (a.requirements || []).some((r) => (r.approvers || []).includes(me) || (r.any_admin && session.role === 'admin'));
  return listed ? '' : 'You are not an approver of this request.';
}

/** freshOTP: the session proved a one-time code within the last 10 minutes
 * (what approving needs), with a margin. */
function freshOTP(session) {
  const otp = (session.amr || []).some((m) => m === 'otp' || m === 'mfa');
  const at = Date.parse(session.authTime || '');
  return otp && Number.isFinite(at) && Date.now() - at < 9 * 60 * 1000;
}

/** Approval: one approval, with Approve and Reject for an approver. Both
 * need a fresh second factor: the one-time code is proved first
 * (/v1/auth/console/step-up), then POST /v1/approvals/{id}/approve or
 * /reject, which take no body. */
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
      const st = r.data && r.data.status;
      const msg = verb === 'approve'
        ? `You approved this request${st && st !== 'pending' ? ': it is now ' + st : ''}.`
        : 'You rejected this request.';
      setDone(msg);
      announce(msg);
      one.reload();
    }
  };
  const a = one.data;
  const why = a && session ? eligibility(a, session) : '';
  return html`<${Page} title=${'Approval ' + id}>
    <p><a href="#/approvals">← All approvals</a></p>
    <${ErrorBox} error=${one.error} />
    <${Notice}>${done}<//>
    ${a && html`
      <div class="card">
        <h2>${title(a)}</h2>
        <${Facts} data=${{ ...a, requester: requester(a) }}
          fields=${['id', 'status', 'kind', 'operation', 'account', 'requester', 'reason', 'created_at', 'expires_at', 'updated_at']}
          omit=${['intent', 'change', 'requirements', 'approvals', 'rejection', 'result', 'requester_owner']}
          labels=${{ reason: 'Why denied', created_at: 'Requested', expires_at: 'Expires', updated_at: 'Updated' }} />
      </div>
      <${Requirements} a=${a} admin=${session && session.role === 'admin'} />
      ${a.intent && html`<div class="card"><h2>Decoded intent</h2><${Intent} intent=${a.intent} /></div>`}
      ${a.change && html`<div class="card"><h2>Policy change</h2><${Facts} data=${a.change} fields=${['op', 'policy', 'base_version', 'document']} /></div>`}
      ${a.result && html`<div class="card result"><h2>Result</h2><${Facts} data=${a.result} fields=${['signature', 'message_hash', 'raw_transaction', 'transaction', 'psbt', 'signed_inputs']} /></div>`}
      ${a.status === 'pending' && (why
        ? html`<p class="hint">${why}</p>`
        : html`<form class="card" onSubmit=${(e) => e.preventDefault()} aria-labelledby="decide-h">
        <h2 id="decide-h">Your decision</h2>
        <p class="hint">${freshOTP(session)
          ? 'You proved a one-time code recently: a new one is not needed, but you may enter one.'
          : 'Approving or rejecting needs a fresh one-time code from your authenticator app.'}</p>
        <${OneTimeCode} value=${code} onInput=${setCode} />
        <${ErrorBox} error=${act.error} />
        <div class="buttons">
          <button type="button" onClick=${decide('approve')} disabled=${act.busy}>Approve</button>
          <button type="button" class="danger" onClick=${decide('reject')} disabled=${act.busy}>Reject</button>
        </div>
      </form>`)}`}
  <//>`;
}

/** Requirements: which policies asked for approval, why, and the votes. */
function Requirements({ a, admin }) {
  const reqs = a.requirements || [];
  const votes = a.approvals || [];
  return html`<div class="card">
    <h2>Approvals needed</h2>
    <div class="table-wrap"><table>
      <caption class="sr-only">Policies that need approval</caption>
      <thead><tr><th scope="col">Policy</th><th scope="col">Why</th><th scope="col">Needs</th></tr></thead>
      <tbody>${reqs.map((r) => html`<tr>
        <th scope="row">${r.policy && admin ? html`<a href=${'#/policies/' + enc(r.policy)}>${r.name || r.policy}</a>` : r.name || r.policy || 'policy change'}</th>
        <td data-label="Why">${r.reason || '—'}</td>
        <td data-label="Needs">${r.threshold} of ${r.any_admin ? 'any admin but the requester' : (r.approvers || []).join(', ')}</td>
      </tr>`)}</tbody>
    </table></div>
    <h3>Votes</h3>
    ${votes.length === 0 && !a.rejection ? html`<p>None yet.</p>` : html`<ul class="votes">
      ${votes.map((v) => html`<li>Approved by <strong>${v.user}</strong>, <${Time} value=${v.at} /></li>`)}
      ${a.rejection && html`<li>Rejected by <strong>${a.rejection.user}</strong>, <${Time} value=${a.rejection.at} /></li>`}
    </ul>`}
  </div>`;
}
