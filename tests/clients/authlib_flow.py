"""An independent relying party: Python Authlib against the real broker binary.

Discovery, authorization code + PKCE (S256) with the login done by `broker card login`,
ID token validation against the published JWKS, userinfo, refresh, then a second authorization
asking for OpenID Connect for Identity Assurance `verified_claims` through the `claims`
parameter, validated against tests/schemas/verified_claims.schema.json. Prints one line per
step; any failed check raises (non-zero exit).
"""
import copy
import datetime
import json
import os
import pathlib
import re
import subprocess
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

ISSUER = os.environ["ISSUER"]
BIN = os.environ["BROKER_BIN"]
CARD = os.environ["CARD_DIR"]
CLIENT_ID = "local-dev"
CLIENT_SECRET = "local-dev-secret"
REDIRECT = "http://127.0.0.1:8765/callback"
SCHEMA = pathlib.Path(__file__).resolve().parents[1] / "schemas" / "verified_claims.schema.json"


def card_login(url, sign_pin=None):
    """Log in at `url` with `broker card login` (consenting); returns the callback URL."""
    args = [BIN, "card", "login", "--card", CARD, "--pin", "1234"]
    if sign_pin is not None:
        args += ["--sign-pin", sign_pin]
    done = subprocess.run(
        args + ["--consent", url],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit("broker card login failed")
    callback = done.stdout.strip()
    assert callback.startswith(REDIRECT), callback
    return callback


def schema_validator():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    # format_checker: without it "date-time"/"date" are annotations only. "date-time" is checked
    # only when rfc3339-validator is installed (requirements.txt); the self-check proves it.
    return Draft202012Validator(schema, format_checker=FormatChecker())


def all_messages(errors):
    """Every message in a jsonschema error tree (oneOf hides the cause in `context`)."""
    out = []
    for e in errors:
        out.append(e.message)
        out.extend(all_messages(e.context))
    return out


# A verified_claims value shaped like the broker's (made up), for the schema's self-check.
SAMPLE = {
    "verification": {
        "trust_framework": "https://jpki-broker.example/trust-framework/jpki-signature",
        "time": "2024-05-01T09:30:00Z",
        "evidence": [
            {
                "type": "electronic_signature",
                "signature_type": "jpki_signature_certificate",
                "issuer": "CN=Demo Signature CA,O=Demo,C=JP",
                "serial_number": "5f3a01",
                "created_at": "2024-05-01T09:29:58Z",
            }
        ],
    },
    "claims": {
        "name": "山田\u3000花子",
        "name_substituted": "00000",
        "birthdate": "1990-04-01",
        "address": {"formatted": "東京都千代田区永田町一丁目", "country": "JP"},
        "address_substituted": "0000000000000",
    },
}


def self_check(validator):
    """The schema must accept a good value and reject known-bad ones, or a passing validation
    proves nothing."""
    good = copy.deepcopy(SAMPLE)
    assert not list(validator.iter_errors(good)), all_messages(validator.iter_errors(good))
    assert not list(validator.iter_errors([good, good])), "an array of verified_claims is allowed"
    no_issuer = copy.deepcopy(good)
    del no_issuer["verification"]["evidence"][0]["issuer"]
    msgs = all_messages(validator.iter_errors(no_issuer))
    assert any("'issuer' is a required property" in m for m in msgs), msgs
    bad_time = copy.deepcopy(good)
    bad_time["verification"]["time"] = "2024-02-30T25:00:00Z"
    msgs = all_messages(validator.iter_errors(bad_time))
    assert any("is not a 'date-time'" in m for m in msgs), ("date-time not checked", msgs)


def main():
    meta = requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == ISSUER, meta["issuer"]
    assert "S256" in meta["code_challenge_methods_supported"]
    print("discovery ok")

    sess = OAuth2Session(
        CLIENT_ID,
        CLIENT_SECRET,
        scope="openid profile offline_access",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = generate_token(64)
    nonce = generate_token(20)
    url, state = sess.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    # Asking for profile makes this first login prove the identity with the signature
    # certificate (hence --sign-pin); the verified_claims step below relies on that.
    callback = card_login(url, sign_pin="ABC123")
    token = sess.fetch_token(
        meta["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
    )
    assert token["token_type"] == "Bearer"
    print("code flow ok")

    jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        token["id_token"],
        jwks,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": ISSUER}},
        claims_params={"nonce": nonce, "client_id": CLIENT_ID, "access_token": token["access_token"]},
    )
    claims.validate()  # iss, aud, exp, iat, nonce, at_hash, auth_time
    assert claims["acr"] == "aal3", claims
    assert "hwk" in claims["amr"], claims
    print("id_token ok")

    info = sess.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"], (info, claims["sub"])
    print("userinfo ok")

    old_refresh = token["refresh_token"]
    new = sess.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
    assert new["refresh_token"] != old_refresh
    again = requests.post(
        meta["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": old_refresh},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=10,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
    print("refresh ok")

    verified_claims_step(meta)


def verified_claims_step(meta):
    """OpenID Connect for Identity Assurance 1.0: OP metadata (§8) and `verified_claims`
    requested with the `claims` parameter at the UserInfo endpoint."""
    trust_frameworks = meta.get("trust_frameworks_supported")
    assert isinstance(trust_frameworks, list) and trust_frameworks, meta
    assert "electronic_signature" in meta.get("evidence_supported", []), meta
    in_vc = meta.get("claims_in_verified_claims_supported")
    assert isinstance(in_vc, list) and {"name", "birthdate", "address"} <= set(in_vc), meta
    assert meta.get("claims_parameter_supported") is True, meta

    request = {
        "userinfo": {
            "verified_claims": {
                "verification": {"trust_framework": None},
                "claims": {"name": None, "birthdate": None, "address": None},
            }
        }
    }
    sess = OAuth2Session(
        CLIENT_ID,
        CLIENT_SECRET,
        scope="openid",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = generate_token(64)
    url, state = sess.create_authorization_url(
        meta["authorization_endpoint"],
        code_verifier=verifier,
        nonce=generate_token(20),
        claims=json.dumps(request, separators=(",", ":")),
    )
    # No --sign-pin: the card was proofed by the first login; asking again would fail here.
    callback = card_login(url)
    sess.fetch_token(
        meta["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
    )
    info = sess.get(meta["userinfo_endpoint"]).json()
    assert "verified_claims" in info, info
    vc = info["verified_claims"]

    validator = schema_validator()
    self_check(validator)
    errors = list(validator.iter_errors(vc))
    if errors:
        worst = best_match(errors)
        raise AssertionError(
            f"verified_claims does not match {SCHEMA.name}: {all_messages(errors)} "
            f"(at {list(worst.absolute_path)}): {json.dumps(vc, ensure_ascii=False)}"
        )

    items = vc if isinstance(vc, list) else [vc]
    for item in items:
        verification, claims = item["verification"], item["claims"]
        assert verification["trust_framework"] == trust_frameworks[0], (verification, trust_frameworks)
        for e in verification.get("evidence", []):
            assert e["type"] in meta["evidence_supported"], e
        # §8: claims not in claims_in_verified_claims_supported shall not be returned.
        assert set(claims) <= set(in_vc), (claims.keys(), in_vc)
        # Only what was asked (each substitute map travels with its claim): no gender.
        asked = {"name", "name_substituted", "birthdate", "address", "address_substituted"}
        assert set(claims) <= asked, claims.keys()
        name = claims["name"]
        assert "\u3000" in name.strip("\u3000"), name  # family and given name, full-width space
        birthdate = claims["birthdate"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", birthdate), birthdate
        datetime.date.fromisoformat(birthdate)
        assert isinstance(claims["address"], dict) and claims["address"].get("formatted"), claims
    # Asked only inside verified_claims: no unverified copies at the top level.
    for c in ("name", "birthdate", "address", "gender"):
        assert c not in info, info
    print("verified_claims ok")


if __name__ == "__main__":
    main()
