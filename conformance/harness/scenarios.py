"""What each conformance module does, as the suite does it: the requests it sends and the
assertions it makes. Every scenario gets the run context, a discovered relying party (one of the
two client libraries) and the module's parameters from plans.toml; it returns normally (pass),
raises `Skip` (the suite would skip the module, with the suite's reason) or fails with an
AssertionError / OAuthFailure.
"""
import base64
import hashlib
import json
import secrets
import time
import urllib.parse

import requests

from clients import Browser, OAuthFailure


class Skip(Exception):
    pass


def _token():
    return secrets.token_urlsafe(16)


def _query(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query))


class Login:
    def __init__(self, tokens, id_claims, interacted, callback):
        self.tokens, self.id, self.interacted, self.callback = tokens, id_claims, interacted, callback


def authorize(ctx, rp, browser, scope="openid", extra=None, nonce=True, pkce=False, post=False):
    """Send an authorization request through `browser`; the RP's callback URL (or the error page
    response) and whether the person was asked to log in."""
    state = _token()
    params = {"redirect_uri": ctx.redirect, "response_type": "code", "scope": scope, "state": state}
    params.update(extra or {})
    n = _token() if nonce else None
    if n:
        params["nonce"] = n
    verifier = None
    if pkce:
        verifier = secrets.token_urlsafe(48)
        params["code_challenge"] = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()
        ).rstrip(b"=").decode()
        params["code_challenge_method"] = "S256"
    if post:
        # No library builds a form-posted authorization request: the browser posts it.
        form = dict(params, client_id=ctx.client_id(rp))
        result, interacted = browser.open(rp.meta["authorization_endpoint"], form=form)
    else:
        result, interacted = browser.open(rp.auth_url(params))
    return result, interacted, state, n, verifier


def login(ctx, rp, browser, max_age=None, **kw):
    """A whole authorization-code login; the tokens and the validated ID token claims."""
    extra = dict(kw.pop("extra", None) or {})
    if max_age is not None:
        extra["max_age"] = str(max_age)
    result, interacted, state, nonce, verifier = authorize(ctx, rp, browser, extra=extra, **kw)
    assert isinstance(result, str), f"no redirect back to the RP: HTTP {result.status_code} {result.text[:300]}"
    assert result.startswith(ctx.redirect), result
    q = _query(result)
    assert q.get("iss") == ctx.issuer, f"authorization response iss {q.get('iss')!r} (RFC 9207)"
    assert q.get("state") == state, "state not returned unchanged"
    if "error" in q:
        raise OAuthFailure(q["error"], q.get("error_description", ""))
    tokens, idc = rp.callback(result, state, nonce, verifier, ctx.redirect, max_age)
    check_id_token(ctx, rp, idc, nonce)
    return Login(tokens, idc, interacted, result)


def check_id_token(ctx, rp, idc, nonce):
    assert idc["iss"] == ctx.issuer, idc
    aud = idc["aud"] if isinstance(idc["aud"], list) else [idc["aud"]]
    assert ctx.client_id(rp) in aud, idc
    assert isinstance(idc.get("sub"), str) and idc["sub"], idc
    now = time.time()
    assert idc["exp"] > now and idc["iat"] <= now + 5, idc
    if nonce:
        assert idc.get("nonce") == nonce, idc
    else:
        assert "nonce" not in idc, "a nonce appeared that was never sent"


# --- scenarios -------------------------------------------------------------------------------

def code_flow(ctx, rp, p):
    if p.get("client") == "post":
        rp = ctx.rp("post")
    lg = login(ctx, rp, Browser(ctx), scope=p.get("scope", "openid"), extra=p.get("extra"),
               nonce=p.get("nonce", True), pkce=p.get("pkce", False), post=p.get("post", False))
    claims = rp.userinfo(lg.tokens["access_token"], lg.id["sub"])
    assert claims["sub"] == lg.id["sub"]


def response_type_missing(ctx, rp, p):
    q = urllib.parse.urlencode({"client_id": ctx.client_id(rp), "redirect_uri": ctx.redirect,
                                "scope": "openid", "state": "s1", "nonce": "n1"})
    # No library sends an authorization request without response_type: raw HTTP.
    result, _ = Browser(ctx).open(f"{rp.meta['authorization_endpoint']}?{q}")
    if isinstance(result, str):
        assert result.startswith(ctx.redirect), result
        got = _query(result)
        assert got.get("error") in ("invalid_request", "unsupported_response_type"), got
        assert got.get("state") == "s1", got
    else:
        assert 400 <= result.status_code < 500, result.status_code


def id_token_signature(ctx, rp, p):
    lg = login(ctx, rp, Browser(ctx))
    # The library verified the signature against the JWKS; the header must name a published key.
    header = json.loads(base64.urlsafe_b64decode(lg.tokens["id_token"].split(".")[0] + "=="))
    assert header["alg"] in rp.meta["id_token_signing_alg_values_supported"], header
    kids = [k.get("kid") for k in requests.get(rp.meta["jwks_uri"], timeout=10).json()["keys"]]
    assert header.get("kid") in kids, (header, kids)


def id_token_unsigned(ctx, rp, p):
    if "none" not in rp.meta["id_token_signing_alg_values_supported"]:
        raise Skip("id_token_signing_alg_values_supported does not include none")
    raise AssertionError("unsigned ID tokens are advertised")


def userinfo(ctx, rp, p):
    lg = login(ctx, rp, Browser(ctx))
    at, sub = lg.tokens["access_token"], lg.id["sub"]
    if p["method"] == "post-body":
        # Neither library sends the token in a form body (RFC 6750 §2.2): raw HTTP.
        r = requests.post(rp.meta["userinfo_endpoint"], data={"access_token": at}, timeout=10)
        assert r.status_code == 200, (r.status_code, r.text)
        claims = r.json()
        assert claims["sub"] == sub, claims
    else:
        rp.userinfo(at, sub, p["method"])


def scopes(ctx, rp, p):
    wanted = p["scope"].split()
    missing = [s for s in wanted if s not in rp.meta.get("scopes_supported", [])]
    if missing:
        raise Skip(f"scopes_supported lacks {' '.join(missing)}")
    lg = login(ctx, rp, Browser(ctx), scope=p["scope"])
    claims = rp.userinfo(lg.tokens["access_token"], lg.id["sub"])
    if "profile" in wanted:
        assert any(k in claims for k in ("name", "birthdate", "gender")), claims
        if "birthdate" in claims:
            time.strptime(claims["birthdate"], "%Y-%m-%d")
    if "address" in wanted:
        assert isinstance(claims.get("address"), dict), claims


def prompt_login(ctx, rp, p):
    b = Browser(ctx)
    first = login(ctx, rp, b)
    time.sleep(1.1)
    again = login(ctx, rp, b, extra={"prompt": "login"})
    assert again.interacted, "prompt=login did not ask the person to log in again"
    assert again.id["sub"] == first.id["sub"]
    assert again.id["auth_time"] > first.id["auth_time"], (first.id, again.id)


def prompt_none_not_logged_in(ctx, rp, p):
    result, interacted, state, _, _ = authorize(ctx, rp, Browser(ctx), extra={"prompt": "none"})
    assert isinstance(result, str) and not interacted, "prompt=none must not show a page"
    q = _query(result)
    assert q.get("error") in ("login_required", "interaction_required", "consent_required",
                              "account_selection_required"), q
    assert q.get("state") == state and q.get("iss") == ctx.issuer, q


def prompt_none_logged_in(ctx, rp, p):
    b = Browser(ctx)
    first = login(ctx, rp, b)
    again = login(ctx, rp, b, extra={"prompt": "none"})
    assert not again.interacted
    assert again.id["sub"] == first.id["sub"]


def max_age(ctx, rp, p):
    b = Browser(ctx)
    first = login(ctx, rp, b)
    assert "auth_time" in first.id
    if p["max_age"] == 1:
        time.sleep(1.5)
    again = login(ctx, rp, b, max_age=p["max_age"])
    assert "auth_time" in again.id, "auth_time is required when max_age was sent"
    if p["max_age"] == 1:
        assert again.interacted, "max_age=1 did not ask the person to log in again"
        assert again.id["auth_time"] > first.id["auth_time"]
    else:
        assert not again.interacted
        assert again.id["auth_time"] == first.id["auth_time"]


def id_token_hint(ctx, rp, p):
    b = Browser(ctx)
    first = login(ctx, rp, b)
    again = login(ctx, rp, b, extra={"prompt": "none", "id_token_hint": first.tokens["id_token"]})
    assert again.id["sub"] == first.id["sub"] and not again.interacted


def code_reuse(ctx, rp, p):
    lg = login(ctx, rp, Browser(ctx))
    time.sleep(p["wait"])
    # The library redeems the same code again (the callback URL is replayed to it).
    try:
        rp.callback(lg.callback, _query(lg.callback)["state"], None, None, ctx.redirect, None)
    except OAuthFailure as e:
        assert e.error == "invalid_grant", e
    else:
        raise AssertionError("a used code was accepted again")
    # RFC 6749 §4.1.2: what the code produced is revoked.
    try:
        rp.userinfo(lg.tokens["access_token"], lg.id["sub"])
    except OAuthFailure as e:
        assert e.error == "invalid_token", e
    else:
        raise AssertionError("the access token of a replayed code still works")


def unregistered_redirect_uri(ctx, rp, p):
    bad = "https://attacker.example/cb"
    url = rp.auth_url({"redirect_uri": bad, "response_type": "code", "scope": "openid",
                       "state": "s", "nonce": "n"})
    result, _ = Browser(ctx).open(url)
    assert not isinstance(result, str), f"redirected to {result}"
    assert result.status_code == 400, result.status_code
    assert bad not in result.headers.get("location", "")


def request_uri(ctx, rp, p):
    if rp.meta.get("request_uri_parameter_supported", True):
        raise AssertionError("request_uri is advertised; the harness has no request_uri server")
    result, _, state, _, _ = authorize(ctx, rp, Browser(ctx),
                                       extra={"request_uri": "https://rp.example/request.jwt"})
    q = _query(result) if isinstance(result, str) else {}
    assert q.get("error") == "request_uri_not_supported", q
    raise Skip("request_uri_parameter_supported is false (the broker answers request_uri_not_supported)")


def request_object(ctx, rp, p):
    if "none" in rp.meta.get("request_object_signing_alg_values_supported", []):
        raise AssertionError("unsigned request objects are advertised but not tested here")
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"client_id": ctx.client_id(rp)}).encode()).rstrip(b"=").decode()
    result, _, _, _, _ = authorize(ctx, rp, Browser(ctx), extra={"request": f"{head}.{body}."})
    # Refused before its redirect URI could be trusted: the error page, never a redirect.
    assert not isinstance(result, str), f"an unsigned request object was redirected: {result}"
    assert result.status_code == 400 and "invalid_request_object" in result.text, result.status_code
    raise Skip("request_object_signing_alg_values_supported lacks none: an unsigned request object is refused with invalid_request_object (RFC 9101 §6.3)")


def claims_essential(ctx, rp, p):
    claims = json.dumps({"userinfo": {"name": {"essential": True}}})
    lg = login(ctx, rp, Browser(ctx), extra={"claims": claims})
    got = rp.userinfo(lg.tokens["access_token"], lg.id["sub"])
    assert "name" in got, got


def refresh(ctx, rp, p):
    lg = login(ctx, rp, Browser(ctx))
    if "refresh_token" not in lg.tokens:
        raise Skip("no refresh token issued")
    tokens, idc = rp.refresh(lg.tokens["refresh_token"])
    assert tokens["refresh_token"] != lg.tokens["refresh_token"], "refresh token not rotated"
    if idc is not None:
        assert idc["sub"] == lg.id["sub"] and idc["iss"] == lg.id["iss"], idc
    rp.userinfo(tokens["access_token"], lg.id["sub"])


def discovery(ctx, rp, p):
    r = requests.get(f"{ctx.issuer}/.well-known/openid-configuration", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    m = r.json()
    assert m["issuer"] == ctx.issuer
    for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert m.get(k, "").startswith(ctx.issuer + "/"), k
    assert "code" in m["response_types_supported"]
    assert set(m["subject_types_supported"]) <= {"public", "pairwise"} and m["subject_types_supported"]
    assert "RS256" in m["id_token_signing_alg_values_supported"], "OIDC Discovery §3 requires RS256"
    assert "openid" in m["scopes_supported"]
    assert all(" " not in s for s in m["scopes_supported"])
    assert "authorization_code" in m.get("grant_types_supported", ["authorization_code"])
    assert isinstance(m.get("claims_parameter_supported", False), bool)
    assert isinstance(m.get("code_challenge_methods_supported", []), list)
    keys = requests.get(m["jwks_uri"], timeout=10).json()["keys"]
    assert keys and all("kty" in k and "d" not in k and k["kty"] != "oct" for k in keys)
    # The suite's "all endpoints are https": the harness's broker is on loopback http (demo);
    # a deployed broker refuses an http issuer unless danger_allow_http_issuer is set.
    loopback = urllib.parse.urlparse(ctx.issuer).hostname in ("localhost", "127.0.0.1")
    for k, v in m.items():
        if k.endswith("_endpoint") or k == "jwks_uri":
            assert v.startswith("https://") or loopback, (k, v)


# --- eKYC (OpenID Connect for Identity Assurance) ----------------------------------------------

_SCHEMA = None


def _verified_claims_schema():
    global _SCHEMA
    if _SCHEMA is None:
        import pathlib

        from jsonschema import Draft202012Validator, FormatChecker

        path = pathlib.Path(__file__).resolve().parents[2] / "tests/schemas/verified_claims.schema.json"
        _SCHEMA = Draft202012Validator(json.loads(path.read_text(encoding="utf-8")),
                                       format_checker=FormatChecker())
    return _SCHEMA


def ekyc(ctx, rp, p):
    m = rp.meta
    # OIDC4IDA §8 metadata (the broker omits the draft-era boolean verified_claims_supported).
    assert m.get("verified_claims_supported", True) is True, "verified_claims_supported"
    assert "electronic_signature" in m["evidence_supported"], m
    frameworks = m["trust_frameworks_supported"]
    supported = m["claims_in_verified_claims_supported"]
    assert frameworks and "name" in supported, m
    mode = p["mode"]
    claim = {
        "happy": None,
        "essential_false": {"essential": False},
        "empty_object": {},
        "random_value": {"value": secrets.token_hex(16)},
        "long_purpose": {"purpose": "x" * 301},
        "short_purpose": {"purpose": "xy"},
    }.get(mode)
    wanted = {"name": claim}
    if mode == "unknown_specialchars":
        wanted = {"n@me_ünknown!": None}
    request = {"userinfo": {"verified_claims": {
        "verification": {"trust_framework": None}, "claims": wanted}}}
    extra = {"claims": json.dumps(request)}
    if mode in ("long_purpose", "short_purpose"):
        result, _, state, _, _ = authorize(ctx, rp, Browser(ctx), extra=extra)
        assert isinstance(result, str), "an error page instead of an error response to the RP"
        q = _query(result)
        assert q.get("error") == "invalid_request" and q.get("state") == state, q
        return
    lg = login(ctx, rp, Browser(ctx), extra=extra)
    assert "verified_claims" not in lg.id, "verified_claims in the ID token, asked for userinfo only"
    got = rp.userinfo(lg.tokens["access_token"], lg.id["sub"])
    vc = got.get("verified_claims")
    if mode in ("random_value", "unknown_specialchars"):
        # A claim the OP cannot give as asked is omitted (and verified_claims with it).
        assert vc is None or "name" not in vc.get("claims", {}), got
        assert vc is None or all(k not in vc.get("claims", {}) for k in wanted), got
        return
    assert vc is not None, f"no verified_claims in userinfo: {got}"
    errors = sorted(_verified_claims_schema().iter_errors(vc), key=str)
    assert not errors, [e.message for e in errors]
    assert vc["verification"]["trust_framework"] in frameworks, vc
    assert set(vc["claims"]) >= {"name"} and set(vc["claims"]) - {"name", "name_substituted"} == set(), (
        "claims beyond those requested", vc["claims"])
