// The device authorization grant (RFC 8628) by an independent client library: panva
// `openid-client` (the harness's pinned copy) plays a set-top box. It prints one JSON line with
// what the TV would show, polls until the person answers, then prints the outcome:
//   {"user_code", "verification_uri", "verification_uri_complete", "interval"}
//   {"tokens": {...}, "id_claims": {...}}   or   {"error", "message"}
// Environment: BROKER_ISSUER, CLIENT_ID, CLIENT_SECRET, SCOPE (default "openid").
import * as client from 'openid-client'

const issuer = new URL(process.env.BROKER_ISSUER)
const loopback = ['localhost', '127.0.0.1'].includes(issuer.hostname)
const say = (v) => process.stdout.write(JSON.stringify(v) + '\n')
try {
  const config = await client.discovery(
    issuer,
    process.env.CLIENT_ID,
    undefined,
    client.ClientSecretBasic(process.env.CLIENT_SECRET),
    { execute: loopback ? [client.allowInsecureRequests] : [] },
  )
  client.enableNonRepudiationChecks(config)
  const d = await client.initiateDeviceAuthorization(config, { scope: process.env.SCOPE || 'openid' })
  say({
    user_code: d.user_code,
    verification_uri: d.verification_uri,
    verification_uri_complete: d.verification_uri_complete,
    interval: d.interval,
  })
  const tokens = await client.pollDeviceAuthorizationGrant(config, d)
  say({ tokens: { ...tokens }, id_claims: tokens.claims() ?? null })
} catch (e) {
  say({ error: e.error ?? e.code ?? 'client_error', message: e.error_description ?? e.message })
}
