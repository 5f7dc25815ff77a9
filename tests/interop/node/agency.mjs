// An agency case system written against the npm package `jose`, not the gateway's code.
// Reads GATEWAY_URL, ISSUER, CLIENT_ID and AGENCY_JWK (a private JWK, JSON) from the
// environment; gets a DPoP-bound token and calls GET /v1/whoami; prints the whoami JSON.
import { SignJWT, importJWK, generateKeyPair, exportJWK, calculateJwkThumbprint } from 'jose';
import { createHash, randomUUID } from 'node:crypto';

const { GATEWAY_URL, ISSUER, CLIENT_ID, AGENCY_JWK } = process.env;
const agencyJwk = JSON.parse(AGENCY_JWK);
const agencyAlg = agencyJwk.kty === 'OKP' ? 'EdDSA' : 'ES256';
const agencyKey = await importJWK(agencyJwk, agencyAlg);
const dpop = await generateKeyPair('ES256');
const dpopJwk = await exportJWK(dpop.publicKey);
const now = () => Math.floor(Date.now() / 1000);

async function proof(htm, htu, accessToken) {
  const claims = { htm, htu, jti: randomUUID(), iat: now() };
  if (accessToken) {
    claims.ath = createHash('sha256').update(accessToken).digest('base64url');
  }
  return new SignJWT(claims)
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: dpopJwk })
    .sign(dpop.privateKey);
}

const assertion = await new SignJWT({})
  .setProtectedHeader({ alg: agencyAlg, kid: agencyJwk.kid, typ: 'JWT' })
  .setIssuer(CLIENT_ID)
  .setSubject(CLIENT_ID)
  .setAudience(ISSUER)
  .setIssuedAt()
  .setExpirationTime('60s')
  .setJti(randomUUID())
  .sign(agencyKey);

const tokenUrl = `${ISSUER}/oauth/token`;
const tokenResponse = await fetch(`${GATEWAY_URL}/oauth/token`, {
  method: 'POST',
  headers: {
    'Content-Type': 'application/x-www-form-urlencoded',
    DPoP: await proof('POST', tokenUrl),
  },
  body: new URLSearchParams({
    grant_type: 'client_credentials',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  }),
});
if (tokenResponse.status !== 200) {
  console.error('token', tokenResponse.status, await tokenResponse.text());
  process.exit(1);
}
const token = await tokenResponse.json();
if (token.token_type !== 'DPoP') {
  console.error('token_type', token.token_type);
  process.exit(1);
}

const whoami = await fetch(`${GATEWAY_URL}/v1/whoami`, {
  headers: {
    Authorization: `DPoP ${token.access_token}`,
    DPoP: await proof('GET', `${ISSUER}/v1/whoami`, token.access_token),
    'MAPPA-Legal-Basis': 'cja2003-s325',
    'MAPPA-Purpose': 'risk-management',
    'MAPPA-Officer': 'DC-1187',
  },
});
if (whoami.status !== 200) {
  console.error('whoami', whoami.status, await whoami.text());
  process.exit(1);
}
const body = await whoami.json();
body.jkt_matches = (await calculateJwkThumbprint(dpopJwk)) !== '';
console.log(JSON.stringify(body));
