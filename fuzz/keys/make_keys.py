"""Makes the differential fuzz target's RSA keys of odd sizes once; they are
kept here as fixtures (test-only keys). OpenSSL's key generation rounds odd
sizes down, so the primes are found here and only the encoding is OpenSSL's.

Run again only to replace them: python3 fuzz/keys/make_keys.py
"""
import os, random
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

here = os.path.dirname(os.path.abspath(__file__))
rng = random.SystemRandom()

def probable_prime(n, rounds=40):
    if n % 2 == 0:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True

def prime(bits, e):
    while True:
        p = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
        if (p - 1) % e and probable_prime(p):
            return p

def key(bits, e):
    while True:
        p, q = prime(bits - bits // 2, e), prime(bits // 2, e)
        n = p * q
        if p != q and n.bit_length() == bits:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, n)
    )
    return numbers.private_key()

for bits, e in [(2049, 65537), (2055, 65537), (2048, 3)]:
    pem = key(bits, e).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    open(os.path.join(here, f"rsa-{bits}-e{e}.pem"), "wb").write(pem)
