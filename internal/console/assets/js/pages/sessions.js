import * as api from '../api.js';
import { html, Page, ErrorBox, Time, useLoad, useAction, listOf, usePages, Pager, enc, announce } from '../ui.js';

/** Sessions: where you are signed in; revoking one ends it at once on every
 * node. Revoking this very session signs the console out. */
export function Sessions({ session }) {
  const list = useLoad(() => api.get('/v1/auth/sessions'), []);
  const rows = listOf(list.data, 'sessions')
    .slice()
    .sort((a, b) => String(b.last_seen).localeCompare(String(a.last_seen)));
  const pg = usePages(rows);
  const act = useAction();
  const revoke = (s) => async () => {
    const r = await act.run(() => api.api('DELETE', '/v1/auth/sessions/' + enc(s.id)));
    if (!r) return;
    if (s.id === session.id) {
      api.endLocally('You revoked this session and were signed out.');
      return;
    }
    announce('Session revoked');
    list.reload();
  };
  return html`<${Page} title="Sessions">
    <${ErrorBox} error=${list.error || act.error} />
    ${list.loading && !list.data && html`<p role="status">Loading sessions…</p>`}
    <div class="table-wrap"><table>
      <caption class="sr-only">Your sessions</caption>
      <thead><tr>
        <th scope="col">Session</th><th scope="col">Started</th><th scope="col">Last seen</th><th scope="col">Expires</th>
        <th scope="col">From</th><th scope="col">Methods</th><th scope="col"><span class="sr-only">Actions</span></th>
      </tr></thead>
      <tbody>
        ${pg.rows.map((s) => {
          const rid = 'sess-' + s.id;
          return html`<tr data-session=${s.id}>
            <th scope="row" id=${rid}><span class="mono">${String(s.id).slice(0, 8)}</span>${s.id === session.id ? html` <strong class="badge">this session</strong>` : ''}</th>
            <td data-label="Started"><${Time} value=${s.created_at} /></td>
            <td data-label="Last seen"><${Time} value=${s.last_seen} /></td>
            <td data-label="Expires"><${Time} value=${s.expires_at} /></td>
            <td data-label="From">${s.remote_addr || '—'}<br /><small class="ua">${s.user_agent || ''}</small></td>
            <td data-label="Methods">${(s.amr || []).join(', ')}</td>
            <td class="actions"><button type="button" class="danger small" aria-describedby=${rid} onClick=${revoke(s)} disabled=${act.busy}>Revoke</button></td>
          </tr>`;
        })}
      </tbody>
    </table></div>
    <${Pager} ...${pg} label="Session pages" />
  <//>`;
}
