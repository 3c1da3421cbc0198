// Checks of what the vault signs, done in the browser with WebCrypto, so
// that the console shows a verified record, not merely a received one.

// The context the vault prefixes to a provenance payload before signing it
// (internal/provenance: "moonvault provenance v1" and a zero byte).
const PROVENANCE_CONTEXT = new TextEncoder().encode('moonvault provenance v1\0');
const PROVENANCE_VERSION = 1;

export function fromBase64(s) {
  const bin = atob(String(s));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function fromHex(s) {
  const h = String(s).replace(/^0x/, '');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(h)) throw new Error('not hex');
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** provenanceKeyID names an Ed25519 key as the vault does: "ed25519:" and
 * the first 8 bytes of its SHA-256, hex. */
export async function provenanceKeyID(pub) {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', pub));
  return 'ed25519:' + toHex(h.slice(0, 8));
}

/** verifyProvenance checks an account's provenance answer (GET
 * /v1/accounts/{name}/provenance) against the published key (GET
 * /v1/sys/provenance/public-key) and the account it should describe.
 * It answers {status, reason, record}: status "verified" with the record
 * decoded from the signed payload (never the unsigned "record" copy);
 * "invalid" with the reason; or "unsupported" when this browser has no
 * Ed25519 in WebCrypto. */
export async function verifyProvenance(answer, key, account) {
  const invalid = (reason) => ({ status: 'invalid', reason });
  let payload, sig, pub;
  try {
    payload = fromBase64(answer.payload);
    sig = fromBase64(answer.signature);
    pub = fromHex(key.public_key);
  } catch {
    return invalid('the record, its signature or the published key is not well-formed');
  }
  if (pub.length !== 32 || sig.length !== 64) return invalid('the signature or the published key has the wrong length for Ed25519');
  if ((await provenanceKeyID(pub)) !== key.key_id) return invalid(`the published key is not the key ${key.key_id} it claims to be`);
  if (answer.key_id !== key.key_id) return invalid(`signed by key ${answer.key_id}, not by the published key ${key.key_id}`);
  let ck;
  try {
    ck = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    return { status: 'unsupported', reason: 'this browser cannot check Ed25519 signatures (' + e.message + ')' };
  }
  const msg = new Uint8Array(PROVENANCE_CONTEXT.length + payload.length);
  msg.set(PROVENANCE_CONTEXT);
  msg.set(payload, PROVENANCE_CONTEXT.length);
  if (!(await crypto.subtle.verify({ name: 'Ed25519' }, ck, sig, msg))) return invalid('the signature does not verify');
  let record;
  try {
    record = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    return invalid('the signed payload is not JSON');
  }
  if (!record || record.version !== PROVENANCE_VERSION) return invalid('the signed record has an unknown version');
  const id = account.owner + '/' + account.name;
  if (record.account !== id) return invalid(`the signed record is of account ${record.account}, not ${id}`);
  if (record.address !== account.address || record.public_key !== account.public_key) {
    return invalid('the signed record names another key than this account has');
  }
  return { status: 'verified', record };
}
