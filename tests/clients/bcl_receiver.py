"""A relying party's back-channel logout receiver (OpenID Connect Back-Channel Logout 1.0 §2.5,
§2.6) and Security Event Token push receiver (RFC 8935), verifying each token with an
independent JOSE library (Authlib) against the broker's JWKS:

    python bcl_receiver.py PORT ISSUER CLIENT_ID

POST /bcl with logout_token=JWT: 200 if the token is valid, 400 otherwise. POST /set with an
application/secevent+jwt body: 202 if the SET is valid, 400 with RFC 8935 §2.3's JSON error
otherwise. GET /log: a JSON object {"valid": [claims...], "invalid": [reasons...], "sets":
[claims...], "invalid_sets": [reasons...]} of everything received so far.
Logout tokens, in §2.6's order: a JWS (no "none") by a key of the issuer's JWKS; typ
logout+jwt; iss the issuer; aud the client; iat present; jti present; events holds the
back-channel event; sub or sid present; no nonce. SETs (RFC 8417 §2, RFC 8935 §2): a JWS by a
key of the JWKS; typ secevent+jwt; iss; aud; iat; jti; events a non-empty object; a sub_id
(OpenID SSF 1.0); no nonce.
"""

import base64
import json
import sys
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from authlib.jose import JsonWebKey, JsonWebToken

PORT, ISSUER, CLIENT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
EVENT = "http://schemas.openid.net/event/backchannel-logout"
jwt = JsonWebToken(["ES256", "RS256", "PS256"])
log = {"valid": [], "invalid": [], "sets": [], "invalid_sets": []}


def decode(token, typ):
    """The claims of a JWS of header type `typ` signed by a key of the issuer's JWKS."""
    jwks = json.load(urllib.request.urlopen(ISSUER + "/jwks", timeout=5))
    head = token.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    if header.get("typ") != typ:
        return None, f"typ is {header.get('typ')!r}"
    return jwt.decode(token, JsonWebKey.import_key_set(jwks)), None


def validate_set(token):
    claims, why = decode(token, "secevent+jwt")
    if claims is None:
        return None, why
    checks = [
        (claims.get("iss") == ISSUER, "iss"),
        (claims.get("aud") == CLIENT or CLIENT in (claims.get("aud") or []), "aud"),
        ("iat" in claims, "iat"),
        ("jti" in claims, "jti"),
        (isinstance(claims.get("events"), dict) and len(claims["events"]) > 0, "events"),
        (isinstance(claims.get("sub_id"), dict) and "format" in claims["sub_id"], "sub_id"),
        ("nonce" not in claims, "nonce present"),
    ]
    for ok, what in checks:
        if not ok:
            return None, what
    return dict(claims), None


def validate(token):
    claims, why = decode(token, "logout+jwt")
    if claims is None:
        return None, why
    checks = [
        (claims.get("iss") == ISSUER, "iss"),
        (claims.get("aud") == CLIENT or CLIENT in (claims.get("aud") or []), "aud"),
        ("iat" in claims, "iat"),
        ("jti" in claims, "jti"),
        (isinstance(claims.get("events"), dict) and EVENT in claims["events"], "events"),
        ("sub" in claims or "sid" in claims, "sub or sid"),
        ("nonce" not in claims, "nonce present"),
    ]
    for ok, what in checks:
        if not ok:
            return None, what
    return dict(claims), None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps(log).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(n).decode()
        if self.path == "/set":
            self.receive_set(body)
            return
        form = urllib.parse.parse_qs(body)
        token = (form.get("logout_token") or [""])[0]
        try:
            claims, why = validate(token)
        except Exception as e:  # a bad signature, a malformed token
            claims, why = None, f"{type(e).__name__}: {e}"
        if claims is None:
            log["invalid"].append(why)
            self.send_response(400)
        else:
            log["valid"].append(claims)
            self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def receive_set(self, body):
        if self.headers.get("content-type") != "application/secevent+jwt":
            claims, why = None, f"content-type {self.headers.get('content-type')!r}"
        else:
            try:
                claims, why = validate_set(body)
            except Exception as e:  # a bad signature, a malformed token
                claims, why = None, f"{type(e).__name__}: {e}"
        if claims is None:
            log["invalid_sets"].append(why)
            err = json.dumps({"err": "invalid_request", "description": why}).encode()
            self.send_response(400)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(err)))
            self.end_headers()
            self.wfile.write(err)
            return
        log["sets"].append(claims)
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
