"""The harness's relying parties (two independent client libraries) and its browser.

`AuthlibRp` (Python Authlib) and `NodeRp` (panva openid-client, through node/rp.mjs) offer the same
steps; a module's scenario calls them and never knows which library it talks to. Steps a library
does not cover (the user's browser, userinfo with the token in a POST body, raw error checks)
are plain HTTP in `Browser` and in the scenarios.
"""
import json
import os
import pathlib
import re
import subprocess
import time
import urllib.parse

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken

HERE = pathlib.Path(__file__).resolve().parent


class OAuthFailure(Exception):
    """The server answered with an OAuth error (or the library refused the answer)."""

    def __init__(self, error, message=""):
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message


class AuthlibRp:
    name = "authlib"

    def __init__(self, issuer, client_id, client_secret, auth="basic"):
        self.issuer, self.client_id, self.secret = issuer, client_id, client_secret
        self.auth = "client_secret_post" if auth == "post" else "client_secret_basic"
        self.meta = None

    def discover(self):
        r = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        r.raise_for_status()
        self.meta = r.json()
        self.jwks = JsonWebKey.import_key_set(requests.get(self.meta["jwks_uri"], timeout=10).json())
        return self.meta

    def _session(self, **kw):
        return OAuth2Session(
            self.client_id, self.secret, token_endpoint_auth_method=self.auth, **kw
        )

    def auth_url(self, params):
        p = dict(params)
        sess = self._session(redirect_uri=p.pop("redirect_uri"), scope=p.pop("scope", None))
        url, _ = sess.create_authorization_url(self.meta["authorization_endpoint"], **p)
        return url

    def _id_claims(self, id_token, nonce=None, max_age=None):
        params = {"client_id": self.client_id}
        if nonce:
            params["nonce"] = nonce
        if max_age is not None:
            params["max_age"] = max_age
        claims = jwt.decode(
            id_token,
            self.jwks,
            claims_cls=CodeIDToken,
            claims_options={"iss": {"essential": True, "value": self.issuer}},
            claims_params=params,
        )
        claims.validate(now=int(time.time()), leeway=5)
        return dict(claims)

    def callback(self, url, state, nonce=None, verifier=None, redirect_uri=None, max_age=None):
        sess = self._session(redirect_uri=redirect_uri, state=state)
        kw = {"code_verifier": verifier} if verifier else {}
        try:
            tok = sess.fetch_token(
                self.meta["token_endpoint"], authorization_response=url, **kw
            )
        except Exception as e:  # authlib raises OAuthError (and MismatchingStateError)
            raise OAuthFailure(getattr(e, "error", type(e).__name__), getattr(e, "description", str(e)))
        if "id_token" not in tok:
            raise OAuthFailure("client_error", "no id_token in the token response")
        return dict(tok), self._id_claims(tok["id_token"], nonce, max_age)

    def userinfo(self, access_token, sub, method="get"):
        sess = self._session(token={"access_token": access_token, "token_type": "Bearer"})
        r = sess.get(self.meta["userinfo_endpoint"]) if method == "get" else sess.post(self.meta["userinfo_endpoint"])
        if r.status_code != 200:
            raise OAuthFailure(_bearer_error(r), r.text)
        claims = r.json()
        if claims.get("sub") != sub:
            raise OAuthFailure("client_error", "userinfo sub differs from the ID token's")
        return claims

    def refresh(self, refresh_token):
        sess = self._session()
        try:
            tok = sess.refresh_token(self.meta["token_endpoint"], refresh_token=refresh_token)
        except Exception as e:
            raise OAuthFailure(getattr(e, "error", type(e).__name__), getattr(e, "description", str(e)))
        claims = self._id_claims(tok["id_token"]) if "id_token" in tok else None
        return dict(tok), claims

    def close(self):
        pass


class NodeRp:
    name = "openid-client"

    def __init__(self, issuer, client_id, client_secret, auth="basic"):
        self.client_id = client_id
        self.args = dict(issuer=issuer, client_id=client_id, client_secret=client_secret, auth=auth)
        self.proc = subprocess.Popen(
            ["node", str(HERE / "node" / "rp.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.meta = None

    def _call(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("openid-client bridge exited")
        out = json.loads(line)
        if "error" in out:
            raise OAuthFailure(out["error"], out.get("message", ""))
        return out

    def discover(self):
        self.meta = self._call(op="discover", **self.args)["metadata"]
        return self.meta

    def auth_url(self, params):
        return self._call(op="auth_url", params=params)["url"]

    def callback(self, url, state, nonce=None, verifier=None, redirect_uri=None, max_age=None):
        out = self._call(op="callback", url=url, state=state, nonce=nonce, verifier=verifier, max_age=max_age)
        return out["tokens"], out["id_claims"]

    def userinfo(self, access_token, sub, method="get"):
        return self._call(op="userinfo", access_token=access_token, sub=sub, method=method)["claims"]

    def refresh(self, refresh_token):
        out = self._call(op="refresh", refresh_token=refresh_token)
        return out["tokens"], out["id_claims"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _bearer_error(r):
    m = re.search(r'error="([^"]+)"', r.headers.get("www-authenticate", ""))
    return m.group(1) if m else f"http_{r.status_code}"


class Browser:
    """The person's browser (cookies kept) and their card helper (`broker card approve`)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.http = requests.Session()

    def open(self, url, form=None):
        """GET (or POST `form` to) `url` and follow the broker's pages until it sends the
        browser back to the RP. Returns (final response or redirect URL, whether the person was
        asked to log in). A page that is not a redirect is returned as the response."""
        if form is None:
            r = self.http.get(url, allow_redirects=False, timeout=30)
        else:
            r = self.http.post(url, data=form, allow_redirects=False, timeout=30)
        interacted = False
        while True:
            if r.status_code not in (302, 303):
                return r, interacted
            loc = urllib.parse.urljoin(r.url, r.headers["location"])
            if not loc.startswith(self.ctx.issuer + "/"):
                return loc, interacted
            path = urllib.parse.urlparse(loc).path
            if path.startswith("/login/") and not path.endswith("/continue"):
                interacted = True
                r = self._card_login(loc)
            elif path.startswith("/consent/"):
                page = self.http.get(loc, timeout=30)
                csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
                r = self.http.post(loc, data={"csrf": csrf, "decision": "approve"}, allow_redirects=False, timeout=30)
            else:
                r = self.http.get(loc, allow_redirects=False, timeout=30)

    def _card_login(self, login_url):
        status_url = login_url.rstrip("/") + "/status"
        st = self.http.get(status_url, timeout=30).json()
        done = subprocess.run(
            [self.ctx.bin, "card", "approve", "--card", self.ctx.card, "--pin", "1234",
             "--sign-pin", "ABC123", st["helper_url"]],
            capture_output=True, text=True, env=dict(os.environ), timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"card approve failed: {done.stderr}")
        st = self.http.get(status_url, timeout=30).json()
        assert st["status"] == "authenticated", st
        return self.http.get(st["continue_url"], allow_redirects=False, timeout=30)
