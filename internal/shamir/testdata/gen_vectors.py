#!/usr/bin/env python3
"""Generates vectors.json with an implementation independent of the Go one:
log/exp tables over GF(2^8) mod 0x11b with generator 0x03 (FIPS-197), and
shares computed by direct polynomial evaluation (not Horner). Deterministic:
coefficients and x coordinates come from SHA-256 of a label."""
import hashlib, json

EXP, LOG = [0] * 510, [0] * 256
v = 1
for i in range(255):
    EXP[i] = v
    LOG[v] = i
    # v *= 3: v*2 (xtime) xor v
    x2 = ((v << 1) ^ (0x11B if v & 0x80 else 0)) & 0xFF
    v = x2 ^ v
for i in range(255, 510):
    EXP[i] = EXP[i - 255]

def gmul(a, b):
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]

def gpow(a, n):
    r = 1
    for _ in range(n):
        r = gmul(r, a)
    return r

def stream(label):
    ctr = 0
    while True:
        for b in hashlib.sha256(f"{label}/{ctr}".encode()).digest():
            yield b
        ctr += 1

def make(label, secret, parts, threshold):
    rnd = stream(label)
    xs = []
    while len(xs) < parts:
        b = next(rnd)
        if b != 0 and b not in xs:
            xs.append(b)
    coeffs = [[next(rnd) for _ in range(threshold - 1)] for _ in secret]
    shares = []
    for x in xs:
        ys = []
        for s, cs in zip(secret, coeffs):
            y = s
            for k, c in enumerate(cs, start=1):
                y ^= gmul(c, gpow(x, k))
            ys.append(y)
        shares.append(bytes(ys + [x]).hex())
    return {
        "name": label,
        "secret": bytes(secret).hex(),
        "parts": parts,
        "threshold": threshold,
        "xs": bytes(xs).hex(),
        "coefficients": [bytes(c).hex() for c in coeffs],
        "shares": shares,
    }

vectors = [
    make("one-byte-2of2", b"\x42", 2, 2),
    make("ascii-3of5", b"moon vault", 5, 3),
    make("zero-secret-2of3", bytes(8), 3, 2),
    make("key-5of7", bytes(range(32)), 7, 5),
    make("ff-4of4", b"\xff" * 16, 4, 4),
    make("wide-10of12", hashlib.sha256(b"wide").digest(), 12, 10),
]
print(json.dumps({"field": "GF(2^8) mod 0x11b", "vectors": vectors}, indent=1))
