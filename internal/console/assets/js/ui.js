// Shared pieces of the console: the page frame, form fields, errors,
// pagination, value formatting and QR codes. Styles live in app.css only
// (the CSP allows no inline style).
import { html, useState, useEffect, useRef } from '../vendor/htm-preact.mjs';
import { encode } from '../vendor/uqr.mjs';

export { html, useState, useEffect, useRef };

export const VAULT = 'Moon Vault';
export const PAGE_SIZE = 20;

let seq = 0;
/** useId gives a stable, unique element id for label/aria wiring. */
export function useId(prefix) {
  const r = useRef(null);
  if (r.current === null) r.current = `${prefix}-${++seq}`;
  return r.current;
}

/** announce tells screen readers about a result without moving focus. */
export function announce(msg) {
  const el = document.getElementById('announcer');
  if (el) {
    el.textContent = '';
    setTimeout(() => {
      el.textContent = msg;
    }, 50);
  }
}

/** Page sets the document title ("Accounts — Moon Vault (host)") and
 * moves focus to the heading when it opens, so a screen reader hears where
 * it is after each navigation. */
export function Page({ title, children, actions }) {
  const h = useRef(null);
  useEffect(() => {
    document.title = `${title} — ${VAULT} (${location.host})`;
    if (h.current && document.activeElement !== h.current && !h.current.contains(document.activeElement)) {
      h.current.focus({ preventScroll: true });
    }
  }, [title]);
  return html`<section class="page">
    <div class="page-head">
      <h1 tabindex="-1" ref=${h}>${title}</h1>
      ${actions}
    </div>
    ${children}
  </section>`;
}

/** ErrorBox shows the API's own message. */
export function ErrorBox({ error }) {
  if (!error) return null;
  const msg = error.message || String(error);
  return html`<p class="error" role="alert">${msg}${error.code && error.code !== 'network' ? html` <span class="code">(${error.code})</span>` : ''}</p>`;
}

export function Notice({ children }) {
  if (!children) return null;
  return html`<p class="notice" role="status">${children}</p>`;
}

/** Field is a labelled input; other props go to the <input>. */
export function Field({ label, hint, id, type = 'text', value, onInput, ...rest }) {
  const auto = useId('f');
  const fid = id || auto;
  const hid = hint ? fid + '-hint' : undefined;
  return html`<div class="field">
    <label for=${fid}>${label}</label>
    <input id=${fid} type=${type} value=${value} onInput=${(e) => onInput(e.currentTarget.value)}
      aria-describedby=${hid} ...${rest} />
    ${hint && html`<small id=${hid} class="hint">${hint}</small>`}
  </div>`;
}

export function TextArea({ label, hint, value, onInput, rows = 4, ...rest }) {
  const fid = useId('t');
  const hid = hint ? fid + '-hint' : undefined;
  return html`<div class="field">
    <label for=${fid}>${label}</label>
    <textarea id=${fid} rows=${rows} value=${value} onInput=${(e) => onInput(e.currentTarget.value)}
      aria-describedby=${hid} ...${rest}></textarea>
    ${hint && html`<small id=${hid} class="hint">${hint}</small>`}
  </div>`;
}

/** Select: options are [value, label] pairs. */
export function Select({ label, value, onInput, options, hint, ...rest }) {
  const fid = useId('s');
  const hid = hint ? fid + '-hint' : undefined;
  return html`<div class="field">
    <label for=${fid}>${label}</label>
    <select id=${fid} value=${value} onChange=${(e) => onInput(e.currentTarget.value)} aria-describedby=${hid} ...${rest}>
      ${options.map(([v, l]) => html`<option value=${v} selected=${v === value}>${l}</option>`)}
    </select>
    ${hint && html`<small id=${hid} class="hint">${hint}</small>`}
  </div>`;
}

/** useLoad runs an async loader when deps change; reload() runs it again. */
export function useLoad(fn, deps) {
  const [st, set] = useState({ loading: true, data: undefined, error: null });
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    set((s) => ({ ...s, loading: true, error: null }));
    fn().then(
      (data) => live && set({ loading: false, data, error: null }),
      (error) => live && set({ loading: false, data: undefined, error }),
    );
    return () => {
      live = false;
    };
  }, [...deps, n]);
  return { ...st, reload: () => setN((x) => x + 1) };
}

/** useAction wraps a form submission: busy flag, error, and the result. */
export function useAction() {
  const [st, set] = useState({ busy: false, error: null });
  const run = async (fn) => {
    set({ busy: true, error: null });
    try {
      const r = await fn();
      set({ busy: false, error: null });
      return r;
    } catch (error) {
      set({ busy: false, error });
      return undefined;
    }
  };
  return { ...st, run, clear: () => set({ busy: false, error: null }) };
}

/** listOf finds the array in a list answer: {"accounts": [...]}, or a bare array. */
export function listOf(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  if (data && typeof data === 'object') {
    for (const v of Object.values(data)) if (Array.isArray(v)) return v;
  }
  return [];
}

/** Pager pages a list held in memory. */
export function usePages(items, size = PAGE_SIZE) {
  const [page, setPage] = useState(0);
  const pages = Math.max(1, Math.ceil(items.length / size));
  const p = Math.min(page, pages - 1);
  return { rows: items.slice(p * size, (p + 1) * size), page: p, pages, setPage };
}

export function Pager({ page, pages, setPage, hasNext, label = 'Pages' }) {
  const next = hasNext !== undefined ? hasNext : page < pages - 1;
  if (page === 0 && !next) return null;
  return html`<nav class="pager" aria-label=${label}>
    <button type="button" class="secondary" disabled=${page === 0} onClick=${() => setPage(page - 1)}>Previous</button>
    <span aria-live="polite">Page ${page + 1}${pages ? ` of ${pages}` : ''}</span>
    <button type="button" class="secondary" disabled=${!next} onClick=${() => setPage(page + 1)}>Next</button>
  </nav>`;
}

export function fmtTime(v) {
  if (!v) return '—';
  const d = new Date(v);
  if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1971) return '—';
  return d.toLocaleString();
}

export function Time({ value }) {
  const s = fmtTime(value);
  return s === '—' ? s : html`<time datetime=${value}>${s}</time>`;
}

export function humanize(key) {
  const s = String(key).replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

const TIME_KEYS = /(_at|_time|^time|last_seen|expires)$/;

/** Value renders any JSON value readably: objects as nested lists. */
export function Value({ k, v }) {
  if (v === null || v === undefined || v === '') return '—';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (Array.isArray(v)) {
    if (v.length === 0) return 'none';
    if (v.every((x) => typeof x !== 'object' || x === null)) return html`<span class="mono">${v.join(', ')}</span>`;
    return html`<ol class="values">${v.map((x) => html`<li><${Value} v=${x} /></li>`)}</ol>`;
  }
  if (typeof v === 'object') return html`<${Facts} data=${v} />`;
  if (k && TIME_KEYS.test(k) && typeof v === 'string') return html`<${Time} value=${v} />`;
  return html`<span class=${typeof v === 'string' && v.length > 24 && !/\s/.test(v) ? 'mono' : ''}>${String(v)}</span>`;
}

/** Facts is a description list of an object's fields: the known ones in
 * order (with labels), then whatever else the server sent. */
export function Facts({ data, fields = [], labels = {}, omit = [] }) {
  if (!data || typeof data !== 'object') return null;
  const keys = [...fields.filter((f) => f in data), ...Object.keys(data).filter((k) => !fields.includes(k))].filter(
    (k) => !omit.includes(k),
  );
  return html`<dl class="facts">
    ${keys.map((k) => html`<div class="fact" data-field=${k}><dt>${labels[k] || humanize(k)}</dt><dd><${Value} k=${k} v=${data[k]} /></dd></div>`)}
  </dl>`;
}

/** QR draws text as a QR code in SVG, in the browser: the text never
 * leaves the page. */
export function QR({ text, label }) {
  if (!text) return null;
  const { data, size } = encode(text, { ecc: 'M', border: 2 });
  let d = '';
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) if (data[y][x]) d += `M${x} ${y}h1v1h-1z`;
  }
  return html`<svg class="qr" viewBox="0 0 ${size} ${size}" role="img" aria-label=${label} shape-rendering="crispEdges" xmlns="http://www.w3.org/2000/svg">
    <rect width=${size} height=${size} fill="#fff" />
    <path d=${d} fill="#000" />
  </svg>`;
}

/** Copy copies a value to the clipboard. */
export function Copy({ value, label = 'Copy' }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setDone(true);
      announce('Copied');
    } catch {
      announce('Copy failed: select the text and copy it by hand');
    }
  };
  return html`<button type="button" class="secondary small" onClick=${copy}>${done ? 'Copied' : label}</button>`;
}

export const CHAINS = [
  ['ethereum', 'Ethereum'],
  ['bitcoin', 'Bitcoin'],
  ['solana', 'Solana'],
];

export function chainName(c) {
  const f = CHAINS.find(([v]) => v === (c || 'ethereum'));
  return f ? f[1] : c;
}

/** enc encodes one path segment. */
export const enc = encodeURIComponent;

/** OneTimeCode is the labelled input for a TOTP code (or a recovery code). */
export function OneTimeCode({ value, onInput, id }) {
  return html`<${Field} id=${id} label="One-time code" value=${value} onInput=${onInput}
    inputmode="numeric" autocomplete="one-time-code" pattern="[0-9A-Za-z -]*" maxlength="32" />`;
}
