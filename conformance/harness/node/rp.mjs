// The harness's second relying party: panva `openid-client` (pinned in package.json), driven by
// conformance/harness/clients.py over JSON lines on stdin/stdout. One request per line:
//   {"op": "discover", "issuer", "client_id", "client_secret", "auth": "basic"|"post"}
//   {"op": "auth_url", "params": {...}}                -> {"url"}
//   {"op": "callback", "url", "state", "nonce", "verifier", "max_age"}
//                                                     -> {"tokens", "id_claims"}
//   {"op": "userinfo", "access_token", "sub", "method": "get"|"post-header"} -> {"claims"}
//   {"op": "refresh", "refresh_token"}                -> {"tokens", "id_claims"}
// Errors come back as {"error": OAuth error code or "client_error", "message"}. The library does
// every step it covers: discovery, URL building, the code exchange with state/nonce/PKCE/ID
// token checks (signature included: enableNonRepudiationChecks), userinfo (GET, and POST with
// the header through fetchProtectedResource) and refresh.
import * as client from 'openid-client'
import * as readline from 'node:readline'

let config = null

async function handle(req) {
  switch (req.op) {
    case 'discover': {
      const auth = req.auth === 'post'
        ? client.ClientSecretPost(req.client_secret)
        : client.ClientSecretBasic(req.client_secret)
      const issuer = new URL(req.issuer)
      const loopback = ['localhost', '127.0.0.1'].includes(issuer.hostname)
      config = await client.discovery(issuer, req.client_id, undefined, auth, {
        // Plain http only for the harness's loopback broker.
        execute: loopback ? [client.allowInsecureRequests] : [],
      })
      client.enableNonRepudiationChecks(config)
      return { metadata: config.serverMetadata() }
    }
    case 'auth_url':
      return { url: client.buildAuthorizationUrl(config, req.params).href }
    case 'callback': {
      const checks = { expectedState: req.state ?? client.skipStateCheck, idTokenExpected: true }
      if (req.nonce) checks.expectedNonce = req.nonce
      if (req.verifier) checks.pkceCodeVerifier = req.verifier
      if (req.max_age !== undefined && req.max_age !== null) checks.maxAge = req.max_age
      const tokens = await client.authorizationCodeGrant(config, new URL(req.url), checks)
      return { tokens: { ...tokens }, id_claims: tokens.claims() ?? null }
    }
    case 'userinfo': {
      if (req.method === 'post-header') {
        const r = await client.fetchProtectedResource(
          config, req.access_token, new URL(config.serverMetadata().userinfo_endpoint), 'POST')
        if (r.status !== 200) return { error: 'http_' + r.status, message: await r.text() }
        const claims = await r.json()
        if (claims.sub !== req.sub) return { error: 'client_error', message: 'userinfo sub differs' }
        return { claims }
      }
      return { claims: await client.fetchUserInfo(config, req.access_token, req.sub) }
    }
    case 'refresh': {
      const tokens = await client.refreshTokenGrant(config, req.refresh_token)
      return { tokens: { ...tokens }, id_claims: tokens.claims() ?? null }
    }
    default:
      return { error: 'client_error', message: `unknown op ${req.op}` }
  }
}

const rl = readline.createInterface({ input: process.stdin })
for await (const line of rl) {
  let out
  try {
    out = await handle(JSON.parse(line))
  } catch (e) {
    // A 401 with a Bearer challenge (RFC 6750) carries the error code in the challenge.
    const challenge = e.code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE' ? e.cause?.[0]?.parameters : null
    out = {
      error: challenge?.error ?? e.error ?? e.code ?? 'client_error',
      message: String(challenge?.error_description ?? e.error_description ?? e.message ?? e),
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}
