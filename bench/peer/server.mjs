// The peer provider of bench/run: panva oidc-provider as peers.md set it up — one confidential
// client (client_secret_basic), one public client (PKCE S256), in-memory storage, ES256 and
// RS256 keys generated at start, a no-browser interaction route that logs a fixed user in and
// grants consent, client_credentials returning `at+jwt` ES256 tokens for one resource server.
//
// Usage: node server.mjs PORT   (prints "listening" once it accepts connections)
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 3000);
const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = 'urn:bench:api';

function jwk(type, opts, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, opts);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: alg.toLowerCase() };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'bench-confidential',
      client_secret: 'bench-confidential-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:9/cb'],
      id_token_signed_response_alg: 'ES256',
      scope: 'openid profile api',
    },
    {
      client_id: 'bench-public',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:9/cb'],
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: {
    keys: [
      jwk('ec', { namedCurve: 'P-256' }, 'ES256'),
      jwk('rsa', { modulusLength: 2048 }, 'RS256'),
    ],
  },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access', 'profile', 'api'],
  claims: { openid: ['sub'], profile: ['name', 'birthdate'] },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, name: 'Taro Shiken', birthdate: '1980-01-01' }),
  }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== RESOURCE) throw new Provider.errors.InvalidTarget();
        return {
          scope: 'api',
          audience: RESOURCE,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  pkce: { required: () => true },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});

// No-browser login: the fixed user logs in and grants the requested scope in one step.
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!m || ctx.method !== 'GET') return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const accountId = 'user-1';
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  const to = await provider.interactionResult(ctx.req, ctx.res,
    { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
});

provider.listen(port, '127.0.0.1', () => console.log('listening'));
