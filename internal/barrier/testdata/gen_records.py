#!/usr/bin/env python3
"""Generates records.json: barrier records built with pyca/cryptography's
AES-GCM, independently of the Go code. Layout: version(1) || term(4, BE) ||
nonce(12) || ciphertext+tag, AAD = version || term || path. Keys are fixed
test keys: term 1 = bytes 0x00..0x1f, term 7 = bytes 0xa0..0xbf."""
import json
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS = {1: bytes(range(32)), 7: bytes(range(0xa0, 0xc0))}

def record(term, path, plaintext, nonce, version=1):
    head = bytes([version]) + term.to_bytes(4, "big")
    ct = AESGCM(KEYS[term]).encrypt(nonce, plaintext, head + path.encode())
    return head + nonce + ct

def flip(b, i):
    b = bytearray(b); b[i] ^= 1; return bytes(b)

n1 = bytes(range(1, 13))
good = record(1, "wallet/keys/alice/main", b"private key material", n1)
cases = [
    ("good_simple", "wallet/keys/alice/main", good, "ok", "private key material"),
    ("good_empty_value", "auth/users/bob", record(1, "auth/users/bob", b"", n1), "ok", ""),
    ("good_term7", "auth/sessions/s1", record(7, "auth/sessions/s1", b'{"sid":"s1"}', bytes(12)), "ok", '{"sid":"s1"}'),
    ("fail_moved_path", "wallet/keys/alice/other", good, "integrity", ""),
    ("fail_flipped_tag", "wallet/keys/alice/main", flip(good, len(good) - 1), "integrity", ""),
    ("fail_flipped_ciphertext", "wallet/keys/alice/main", flip(good, 20), "integrity", ""),
    ("fail_flipped_nonce", "wallet/keys/alice/main", flip(good, 6), "integrity", ""),
    ("fail_truncated", "wallet/keys/alice/main", good[:32], "integrity", ""),
    ("fail_version_2", "wallet/keys/alice/main", b"\x02" + good[1:], "integrity", ""),
    ("fail_unknown_term", "wallet/keys/alice/main", good[:1] + (9).to_bytes(4, "big") + good[5:], "unknown_term", ""),
    ("fail_term_relabelled", "wallet/keys/alice/main", good[:1] + (7).to_bytes(4, "big") + good[5:], "integrity", ""),
]
print(json.dumps([{"name": n, "path": p, "record": r.hex(), "want": w, "plaintext": pt}
                  for n, p, r, w, pt in cases], indent=1))
