"""A relying party's back-channel logout receiver (OpenID Connect Back-Channel Logout 1.0 §2.5,
§2.6), verifying each logout token with an independent JOSE library (Authlib) against the
broker's JWKS:

    python bcl_receiver.py PORT ISSUER CLIENT_ID

POST /bcl with logout_token=JWT: 200 if the token is valid, 400 otherwise. GET /log: a JSON
object {"valid": [claims...], "invalid": [reasons...]} of everything received so far.
Validation, in §2.6's order: a JWS (no "none") by a key of the issuer's JWKS; typ logout+jwt;
iss the issuer; aud the client; iat present; jti present; events holds the back-channel event;
sub or sid present; no nonce.
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
log = {"valid": [], "invalid": []}


def validate(token):
    jwks = json.load(urllib.request.urlopen(ISSUER + "/jwks", timeout=5))
    head = token.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    if header.get("typ") != "logout+jwt":
        return None, f"typ is {header.get('typ')!r}"
    claims = jwt.decode(token, JsonWebKey.import_key_set(jwks))
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
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
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


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
