import * as api from '../api.js';
import { html, useState, Page, Field, ErrorBox, Notice, useAction, OneTimeCode, announce } from '../ui.js';

/** Password: change your own password. Your other sessions end; this one
 * stays. With two-factor sign-in on, a one-time code is needed too. */
export function Password({ session }) {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [code, setCode] = useState('');
  const [done, setDone] = useState('');
  const act = useAction();
  const usedOTP = (session.amr || []).some((m) => m === 'otp' || m === 'mfa');
  const submit = async (e) => {
    e.preventDefault();
    setDone('');
    const body = { current_password: current, new_password: next };
    if (code.trim()) body.totp = code.trim();
    const r = await act.run(() => api.api('POST', '/v1/auth/password', body));
    setCode('');
    if (r) {
      setCurrent('');
      setNext('');
      setDone('Your password was changed; your other sessions were ended.');
      announce('Password changed');
    }
  };
  return html`<${Page} title="Password">
    <${Notice}>${done}<//>
    <form class="card" onSubmit=${submit} aria-labelledby="pw-h">
      <h2 id="pw-h">Change your password</h2>
      <${Field} label="Current password" type="password" value=${current} onInput=${setCurrent} autocomplete="current-password" required />
      <${Field} label="New password" type="password" value=${next} onInput=${setNext} autocomplete="new-password" required hint="At least 12 characters." />
      ${usedOTP && html`<${OneTimeCode} value=${code} onInput=${setCode} />`}
      <${ErrorBox} error=${act.error} />
      <div class="buttons"><button type="submit" disabled=${act.busy}>Change password</button></div>
    </form>
  <//>`;
}
