import * as api from '../api.js';
import { html, useState, Page, ErrorBox, Notice, QR, Copy, useAction, OneTimeCode, announce } from '../ui.js';

/** MFA: enrol an authenticator app (TOTP, RFC 6238) by scanning a QR code
 * of the otpauth URI, drawn in the browser; confirm with a code; keep the
 * recovery codes. Turning it off needs a fresh code (step-up). */
export function MFA({ session }) {
  const [enrolment, setEnrolment] = useState(null);
  const [code, setCode] = useState('');
  const [recovery, setRecovery] = useState(null);
  const [off, setOff] = useState('');
  const [notice, setNotice] = useState('');
  const start = useAction();
  const confirm = useAction();
  const disable = useAction();
  const usedOTP = (session.amr || []).some((m) => m === 'otp' || m === 'mfa');

  const begin = async () => {
    setNotice('');
    const r = await start.run(() => api.api('POST', '/v1/auth/mfa/totp/enroll'));
    if (r) {
      setEnrolment(r.data);
      setRecovery(null);
    }
  };
  const finish = async (e) => {
    e.preventDefault();
    const r = await confirm.run(() => api.api('POST', '/v1/auth/mfa/totp/confirm', { code: code.trim() }));
    setCode('');
    if (r) {
      setRecovery(r.data.recovery_codes || []);
      setEnrolment(null);
      announce('Two-factor sign-in is on. Store your recovery codes.');
    }
  };
  const turnOff = async (e) => {
    e.preventDefault();
    const r = await disable.run(async () => {
      if (off.trim()) await api.stepUp(off.trim());
      return api.api('DELETE', '/v1/auth/mfa/totp');
    });
    setOff('');
    if (r) {
      setNotice('Two-factor sign-in is off.');
      announce('Two-factor sign-in is off');
    }
  };

  return html`<${Page} title="Two-factor sign-in">
    <p>${usedOTP
      ? 'This session was signed in with a one-time code.'
      : 'This session was signed in with a password only.'}</p>
    <${Notice}>${notice}<//>
    ${recovery && html`<div class="card secret" role="status">
      <h2>Two-factor sign-in is on</h2>
      <p><strong>Store these recovery codes now; they are shown only once.</strong> Each one signs you in once if you lose your authenticator.</p>
      <ol class="mono recovery" data-secret="recovery-codes">${recovery.map((c) => html`<li>${c}</li>`)}</ol>
      <${Copy} value=${recovery.join('\n')} label="Copy recovery codes" />
    </div>`}
    ${!enrolment && html`<div class="card">
      <h2>Set up an authenticator app</h2>
      <p>Use any TOTP app (6 digits, 30 seconds). From then on, signing in asks for a one-time code.</p>
      <${ErrorBox} error=${start.error} />
      <div class="buttons"><button type="button" onClick=${begin} disabled=${start.busy}>Set up two-factor sign-in</button></div>
    </div>`}
    ${enrolment && html`<form class="card" onSubmit=${finish} aria-labelledby="enrol-h">
      <h2 id="enrol-h">Scan this code with your authenticator app</h2>
      <div class="enrol">
        <${QR} text=${enrolment.otpauth_url} label="QR code of the authenticator setup link" />
        <div>
          <p>Or enter this key by hand:</p>
          <p><code class="mono totp-secret" data-secret="totp">${enrolment.secret}</code> <${Copy} value=${enrolment.secret} label="Copy key" /></p>
          <${OneTimeCode} value=${code} onInput=${setCode} />
          <${ErrorBox} error=${confirm.error} />
          <div class="buttons"><button type="submit" disabled=${confirm.busy}>Confirm</button>
            <button type="button" class="secondary" onClick=${() => setEnrolment(null)}>Cancel</button></div>
        </div>
      </div>
    </form>`}
    ${!enrolment && html`<form class="card" onSubmit=${turnOff} aria-labelledby="off-h">
      <h2 id="off-h">Turn off two-factor sign-in</h2>
      <${OneTimeCode} value=${off} onInput=${setOff} />
      <${ErrorBox} error=${disable.error} />
      <div class="buttons"><button type="submit" class="danger" disabled=${disable.busy}>Turn off</button></div>
    </form>`}
  <//>`;
}
