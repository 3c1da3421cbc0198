import * as api from '../api.js';
import {
  html, useState, Page, Field, Select, ErrorBox, Facts, Time, useLoad, useAction, listOf, usePages, Pager, enc, announce,
} from '../ui.js';

/** Users (admin): create users, disable and enable them. A disabled user's
 * tokens and API keys stop working at once. */
export function Users({ session }) {
  const list = useLoad(() => api.get('/v1/users'), []);
  const rows = listOf(list.data, 'users').slice().sort((a, b) => a.username.localeCompare(b.username));
  const pg = usePages(rows);
  const act = useAction();
  const setDisabled = (u, disabled) => async () => {
    const r = await act.run(() => api.api('POST', `/v1/users/${enc(u.username)}/${disabled ? 'disable' : 'enable'}`));
    if (r) {
      announce(`User ${u.username} ${disabled ? 'disabled' : 'enabled'}`);
      list.reload();
    }
  };
  return html`<${Page} title="Users">
    <${ErrorBox} error=${list.error || act.error} />
    <div class="table-wrap"><table>
      <caption class="sr-only">Users</caption>
      <thead><tr><th scope="col">Username</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col">Two-factor</th><th scope="col">Created</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>
        ${pg.rows.map((u) => html`<tr data-user=${u.username}>
          <th scope="row" id=${'user-' + u.username}>${u.username}</th>
          <td data-label="Role">${u.role}</td>
          <td class="status" data-label="Status">${u.disabled ? html`<span class="badge deny">disabled</span>` : 'active'}</td>
          <td data-label="Two-factor">${u.mfa_enabled ? 'on' : 'off'}</td>
          <td data-label="Created"><${Time} value=${u.created_at} /></td>
          <td class="actions">${u.username === session.username
            ? ''
            : u.disabled
              ? html`<button type="button" class="secondary small" aria-describedby=${'user-' + u.username} onClick=${setDisabled(u, false)} disabled=${act.busy}>Enable</button>`
              : html`<button type="button" class="danger small" aria-describedby=${'user-' + u.username} onClick=${setDisabled(u, true)} disabled=${act.busy}>Disable</button>`}</td>
        </tr>`)}
      </tbody>
    </table></div>
    <${Pager} ...${pg} label="User pages" />
    <${CreateUser} onCreated=${list.reload} />
  <//>`;
}

function CreateUser({ onCreated }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState('user');
  const act = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const r = await act.run(() => api.api('POST', '/v1/users', { username: username.trim(), password, role }));
    if (r) {
      announce(`User ${username.trim()} created`);
      setUsername('');
      setPassword('');
      onCreated();
    }
  };
  return html`<form class="card" onSubmit=${submit} aria-labelledby="user-h">
    <h2 id="user-h">Create a user</h2>
    <${Field} label="New username" value=${username} onInput=${setUsername} required autocomplete="off" autocapitalize="none" spellcheck="false" />
    <${Field} label="New password" type="password" value=${password} onInput=${setPassword} required autocomplete="new-password" hint="At least 12 characters." />
    <${Select} label="Role" value=${role} onInput=${setRole} options=${[['user', 'User'], ['admin', 'Admin']]} />
    <${ErrorBox} error=${act.error} />
    <div class="buttons"><button type="submit" disabled=${act.busy}>Create user</button></div>
  </form>`;
}

/** parseMetrics reads Prometheus text exposition into [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of String(text).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function sum(ms, name, pred = () => true) {
  return ms.filter((m) => m.name === name && pred(m.labels)).reduce((a, m) => a + m.value, 0);
}

function by(ms, name, label) {
  const acc = {};
  for (const m of ms) if (m.name === name) acc[m.labels[label] || '?'] = (acc[m.labels[label] || '?'] || 0) + m.value;
  return acc;
}

function fmtBy(o) {
  const e = Object.entries(o);
  return e.length ? e.map(([k, v]) => `${k}: ${v}`).join(', ') : 'none';
}

function MetricsSummary() {
  const m = useLoad(() => api.get('/v1/sys/metrics'), []);
  if (m.error) return html`<${ErrorBox} error=${m.error} />`;
  if (!m.data) return html`<p role="status">Loading metrics…</p>`;
  const ms = parseMetrics(m.data);
  const started = sum(ms, 'process_start_time_seconds');
  const summary = {
    requests: sum(ms, 'moonvault_http_requests_total'),
    'requests answered 5xx': sum(ms, 'moonvault_http_requests_total', (l) => String(l.code).startsWith('5')),
    'requests answered 4xx': sum(ms, 'moonvault_http_requests_total', (l) => String(l.code).startsWith('4')),
    'signatures by chain': fmtBy(by(ms, 'moonvault_signatures_total', 'chain')),
    'signatures by kind': fmtBy(by(ms, 'moonvault_signatures_total', 'kind')),
    'policy decisions': fmtBy(by(ms, 'moonvault_policy_decisions_total', 'decision')),
    sealed: sum(ms, 'moonvault_sealed') ? 'yes' : 'no',
    'HSM entropy bytes drawn': sum(ms, 'moonvault_entropy_hsm_bytes_total'),
    'entropy health-test failures': sum(ms, 'moonvault_entropy_health_failures_total'),
    'audit lines written': sum(ms, 'moonvault_audit_lines_total'),
    'audit failures': sum(ms, 'moonvault_audit_failures_total'),
    'resident memory (MiB)': (sum(ms, 'process_resident_memory_bytes') / 1048576).toFixed(1),
    goroutines: sum(ms, 'go_goroutines'),
    started_at: started ? new Date(started * 1000).toISOString() : '',
  };
  return html`<${Facts} data=${summary} />`;
}

function Panel({ title, path, fields, labels }) {
  const d = useLoad(() => api.get(path), [path]);
  return html`<section class="card" aria-labelledby=${'p-' + path}>
    <h2 id=${'p-' + path}>${title}</h2>
    <${ErrorBox} error=${d.error} />
    ${d.data && html`<${Facts} data=${d.data} fields=${fields} labels=${labels} />`}
  </section>`;
}

/** System (admin): seal, entropy and HSM, hardening, the audit head and a
 * summary of the Prometheus metrics. */
export function System() {
  return html`<${Page} title="System">
    <div class="grid">
      <${Panel} title="Seal" path="/v1/sys/seal-status" fields=${['type', 'initialized', 'sealed', 'recovery_seal', 't', 'n', 'progress', 'term']}
        labels=${{ type: 'Seal type', t: 'Threshold', n: 'Shares', recovery_seal: 'Recovery shares (HSM seal)', progress: 'Unseal progress', term: 'Key term' }} />
      <${Panel} title="Entropy and HSM" path="/v1/sys/entropy" fields=${['mode', 'source', 'hsm_bytes_read', 'health_failures']}
        labels=${{ mode: 'Entropy mode', source: 'Source (pkcs11 = HSM)', hsm_bytes_read: 'HSM bytes drawn', health_failures: 'SP 800-90B health-test failures' }} />
      <${Panel} title="Audit log head" path="/v1/sys/audit/public-key" fields=${['head_seq', 'head_hash', 'key_id', 'public_key']}
        labels=${{ head_seq: 'Head sequence number', head_hash: 'Head hash', key_id: 'Checkpoint key id', public_key: 'Checkpoint public key (Ed25519)' }} />
      <${Panel} title="Process hardening" path="/v1/sys/hardening" />
    </div>
    <section class="card" aria-labelledby="metrics-h">
      <h2 id="metrics-h">Metrics</h2>
      <${MetricsSummary} />
    </section>
  <//>`;
}
