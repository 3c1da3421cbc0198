import * as api from '../api.js';
import { html, useState, useEffect, Page, Field, ErrorBox, Notice, OneTimeCode } from '../ui.js';

/** SignIn: username and password; then a one-time code when the user has
 * TOTP enrolled (the vault answers 401 mfa_required). */
export function SignIn({ notice, error: bootError }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needCode, setNeedCode] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(bootError || null);

  useEffect(() => {
    if (needCode) {
      const el = document.getElementById('signin-code');
      if (el) el.focus();
    }
  }, [needCode]);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.signIn(username.trim(), password, needCode ? code.trim() : undefined);
    } catch (err) {
      if (err.code === 'mfa_required' && !needCode) {
        setNeedCode(true);
      } else {
        setError(err);
        if (needCode) setCode('');
      }
      setBusy(false);
    }
  };

  return html`<div class="signin">
    <${Page} title="Sign in">
      <p class="lead">Sign in to the vault at <strong>${location.host}</strong>.</p>
      <${Notice}>${notice}<//>
      <form onSubmit=${submit} class="card" novalidate>
        <${Field} label="Username" value=${username} onInput=${setUsername} autocomplete="username"
          autocapitalize="none" spellcheck="false" required readonly=${needCode} />
        <${Field} label="Password" type="password" value=${password} onInput=${setPassword}
          autocomplete="current-password" required readonly=${needCode} />
        ${needCode &&
        html`<p id="signin-code-hint">Enter the code from your authenticator app (or a recovery code).</p>
          <${OneTimeCode} id="signin-code" value=${code} onInput=${setCode} />`}
        <${ErrorBox} error=${error} />
        <div class="buttons">
          <button type="submit" disabled=${busy}>Sign in</button>
          ${needCode &&
          html`<button type="button" class="secondary" onClick=${() => {
            setNeedCode(false);
            setCode('');
            setError(null);
          }}>Start over</button>`}
        </div>
      </form>
    <//>
  </div>`;
}
