"""An independent relying party: Python Authlib against the real broker binary.

Discovery, authorization code + PKCE (S256) with the login done by `broker card login`,
ID token validation against the published JWKS, userinfo, refresh. Prints one line per step;
any failed check raises (non-zero exit).
"""
import os
import subprocess
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken

ISSUER = os.environ["ISSUER"]
BIN = os.environ["BROKER_BIN"]
CARD = os.environ["CARD_DIR"]
CLIENT_ID = "local-dev"
CLIENT_SECRET = "local-dev-secret"
REDIRECT = "http://127.0.0.1:8765/callback"


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
    done = subprocess.run(
        [BIN, "card", "login", "--card", CARD, "--pin", "1234", "--sign-pin", "ABC123", "--consent", url],
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


if __name__ == "__main__":
    main()
