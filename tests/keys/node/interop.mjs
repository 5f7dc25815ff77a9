// Interop driver for tests/keys/test_jose_interop.py: one JSON request on stdin, one JSON answer
// on stdout. Uses only the npm 'jose' library, an implementation independent of keys/.
import * as jose from "jose";

const read = async () => {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
};

const keygen = async (alg) => {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, {
    extractable: true,
    modulusLength: 3072,
  });
  const pub = await jose.exportJWK(publicKey);
  const priv = await jose.exportJWK(privateKey);
  pub.kid = priv.kid = await jose.calculateJwkThumbprint(pub);
  return { public: pub, private: priv };
};

const actions = {
  // An agency adapter seals a body to the gateway: sign (ES256 or EdDSA), then encrypt.
  async seal({ payload, signAlg, recipientJwk }) {
    const signer = await keygen(signAlg);
    const inner = await new jose.CompactSign(Buffer.from(payload, "base64"))
      .setProtectedHeader({ alg: signAlg, kid: signer.public.kid })
      .sign(await jose.importJWK(signer.private, signAlg));
    const recipient = await jose.importJWK(recipientJwk, recipientJwk.alg);
    const jwe = await new jose.CompactEncrypt(new TextEncoder().encode(inner))
      .setProtectedHeader({ alg: recipientJwk.alg, enc: "A256GCM", cty: "JWT", kid: recipientJwk.kid })
      .encrypt(recipient);
    return { jwe, senderJwk: signer.public };
  },
  async keygen({ alg }) {
    return keygen(alg);
  },
  // An agency adapter opens a body from the gateway: decrypt, then verify against its JWKS.
  async unseal({ jwe, privateJwk, senderJwks }) {
    const key = await jose.importJWK(privateJwk, privateJwk.alg);
    const { plaintext, protectedHeader } = await jose.compactDecrypt(jwe, key, {
      keyManagementAlgorithms: [privateJwk.alg],
      contentEncryptionAlgorithms: ["A256GCM"],
    });
    const jwks = jose.createLocalJWKSet(senderJwks);
    const inner = await jose.compactVerify(new TextDecoder().decode(plaintext), jwks, {
      algorithms: ["ES256", "EdDSA"],
    });
    return {
      payload: Buffer.from(inner.payload).toString("base64"),
      kid: inner.protectedHeader.kid,
      cty: protectedHeader.cty,
    };
  },
  async verifyJwt({ token, jwks, typ }) {
    const { payload, protectedHeader } = await jose.jwtVerify(token, jose.createLocalJWKSet(jwks), {
      algorithms: ["ES256"],
      typ,
    });
    return { payload, kid: protectedHeader.kid };
  },
  async signJwt({ claims, alg, typ }) {
    const signer = await keygen(alg);
    const token = await new jose.SignJWT(claims)
      .setProtectedHeader({ alg, kid: signer.public.kid, typ })
      .sign(await jose.importJWK(signer.private, alg));
    return { token, jwk: signer.public };
  },
};

const request = await read();
const answer = await actions[request.action](request);
process.stdout.write(JSON.stringify(answer));
