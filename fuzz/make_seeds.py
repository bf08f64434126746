"""Writes the committed seed corpus, fuzz/corpus/TARGET/, from the repo's
fixtures: wasmplugins/policy.yaml, tests/fixtures/keys (JWKS, signed tokens,
the private keys that mint tokens for the example policy's provider), and
a few hostile paths. libFuzzer's own finds are not committed here
(`cargo xtask fuzz` keeps them under fuzz/target/corpus/).

Run again to rewrite them: python3 fuzz/make_seeds.py
"""
import base64, hashlib, json, os, shutil
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
corpus = os.path.join(root, "fuzz", "corpus")
keys = os.path.join(root, "tests", "fixtures", "keys")
NOW = 1_800_000_000  # tollgate_fuzz::NOW

def write(target, content):
    data = content if isinstance(content, bytes) else content.encode()
    directory = os.path.join(corpus, target)
    os.makedirs(directory, exist_ok=True)
    # Named by content, as libFuzzer names its own finds.
    open(os.path.join(directory, hashlib.sha1(data).hexdigest()), "wb").write(data)

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def key(name):
    return serialization.load_pem_private_key(open(os.path.join(keys, name + ".pem"), "rb").read(), None)

def mint(alg, kid, claims):
    header = b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signing = f"{header}.{payload}".encode()
    if alg == "RS256":
        sig = key(kid).sign(signing, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        sig = key(kid).sign(signing, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    else:
        r, s = utils.decode_dss_signature(key(kid).sign(signing, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{header}.{payload}.{b64(sig)}"

shutil.rmtree(corpus, ignore_errors=True)

# Policies: the example as YAML and JSON, and smaller pieces of it.
text = open(os.path.join(root, "wasmplugins", "policy.yaml")).read()
policy = yaml.safe_load(text)
write("policy_yaml", text)
write("policy_json", json.dumps(policy))
write("policy_json", json.dumps(policy, indent=1))
for section in ["routes", "tenants", "tenant", "jwt", "paths", "mesh", "defaults"]:
    small = {"version": 1, section: policy[section]}
    write("policy_json", json.dumps(small))
    write("policy_yaml", yaml.safe_dump(small))
# The mesh section's attachments: targets mesh-wide, a selector and targets per namespace.
MESH_TARGETS = {"version": 1, "mesh": {
    "target_refs": [{"kind": "GatewayClass", "name": "istio-waypoint"}],
    "namespaces": [
        {"name": "datahub", "target_refs": [{"kind": "Gateway", "name": "waypoint"},
                                             {"kind": "Service", "name": "api", "group": ""}]},
        {"name": "trino", "selector": {"app": "trino"}, "modes": {"jwt": "shadow"}},
    ]}}
write("policy_json", json.dumps(MESH_TARGETS))
write("policy_yaml", yaml.safe_dump(MESH_TARGETS))
write("policy_json", '{"version": 1}')
write("policy_yaml", "version: 1\nroutes:\n  - name: a\n    match: {prefix: /a}\n    methods: [GET]\n")
write("policy_yaml", "version: 1\nroutes: &r [ {name: a, match: {exact: /x}} ]\nx: *r\n")

# JWKS bodies: the fixture set, each key alone, and the example's local set.
jwks = json.load(open(os.path.join(keys, "jwks.json")))
write("jwks", json.dumps(jwks))
for k in jwks["keys"]:
    write("jwks", json.dumps({"keys": [k]}))
write("jwks", json.dumps(policy["jwt"]["providers"][0]["local_jwks"]))
write("jwks", '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')

# Tokens: the fixture's signed ones and ones minted for the example provider.
claims = {
    "iss": "portal-service-issuer", "aud": "254carbon-api", "sub": "u-1", "user_id": "u-1",
    "tenant": "STD-001", "scope": "trino:query read", "roles": ["data-engineer"],
    "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 600,
}
tokens = [t["token"] for t in json.load(open(os.path.join(keys, "signed.json")))]
minted = [
    mint("RS256", "rsa-1", claims),
    mint("PS256", "rsa-1", claims),
    mint("ES256", "ec-256", claims),
    mint("RS256", "rsa-1", {**claims, "tenant": "NED-001", "roles": ["viewer"]}),
    mint("RS256", "rsa-1", {k: v for k, v in claims.items() if k != "tenant"}),
]
for t in tokens + minted:
    write("token", t)

# Requests: METHOD, :path, :authority, headers (tollgate_fuzz::request).
def request(method, path, authority, *headers):
    return "\n".join([method, path, authority, *headers])

paths = [
    "/api/datahub/datasets?limit=10", "/api/trino/v1/statement", "/api/services",
    "/t/STD-001/api/superset/", "/api/iceberg/../trino/x", "/api/%2e%2e/trino",
    "/API/Trino", "/api/datahub%2F..%2Ftrino", "/api//mlflow/./runs", "/api/trino;x=1/q",
    "/api/datahub?_method=DELETE", "*", "/%u2215api", "/api/dolphinscheduler/%C0%AE%C0%AE/",
]
hosts = ["api.example.com", "std-001.tenants.example.com", "API.Example.com:443", "[::1]:10000"]
for i, path in enumerate(paths):
    write("path_route", request("GET", path, hosts[i % len(hosts)]))
write("path_route", request("OPTIONS", "*", "api.example.com"))
write("path_route", request("post", "/api/trino/v1/statement?x=%zz", "api.example.com"))

for i, token in enumerate(minted):
    path = paths[i % 4]
    write("jwt_decide", request("GET", path, "api.example.com", f"authorization: Bearer {token}"))
    write("jwt_decide", request("POST", "/api/trino/v1/statement", "api.example.com",
                                f"authorization: Bearer {token}", "x-user-id: forged"))
write("jwt_decide", request("GET", "/api/datahub?access_token=" + minted[0], "api.example.com"))
write("jwt_decide", request("GET", "/api/datahub", "api.example.com", "authorization: Bearer " + tokens[0]))
write("jwt_decide", request("GET", "/api/services", "api.example.com"))

write("tenant", request("GET", "/api/datahub/x", "api.example.com", "tollgate.tenant: STD-001"))
write("tenant", request("GET", "/api/datahub/x", "api.example.com", "x-tenant-id: NED-001", "x_tenant_id: ACME"))
write("tenant", request("GET", "/t/ACME/api/trino/q", "acme.tenants.example.com", "x-tenant-tier: premium"))
write("tenant", request("GET", "/api/iceberg/t", "old-001.tenants.example.com", "tollgate.shadow: 1"))
write("tenant", request("GET", "/api/superset", "api.example.com", "tollgate.tenant: NED-001", "x-tenant-id: STD-001"))

# RSA differential: key, alg, mode, message length, message, rest
# (tollgate_fuzz::rsa_diff). Every key, algorithm and mode once.
message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"
for k in range(6):
    for a in range(6):
        for mode in range(5):
            if (k + a + mode) % 3 == 0:
                rest = bytes([mode * 7 + a, 0, k, 0x01, 0x00, 0x02, 0x80, 0xff, 0x00, 0x00, 0x01])
                write("rsa_differential", bytes([k, a, mode, len(message)]) + message + rest)
