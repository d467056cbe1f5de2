import { createHmac, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, signUp } from '../support/client.js';
import { errorCodes } from '../support/graphql.js';
import { startPlatform, type Platform } from '../support/platform.js';

/** Bad input of every kind is refused with a code, never a 5xx or a stack trace, and the router lives on. */
let platform: Platform;
let user: Awaited<ReturnType<typeof signUp>>;

beforeAll(async () => {
  platform = await startPlatform('e2e_hostile', { env: { RATE_LIMIT_AUTH_PER_MINUTE: '1000' } });
  user = await signUp(platform.url, `hostile-${randomUUID().slice(0, 8)}@example.com`);
}, 120_000);
afterAll(async () => {
  await platform?.stop();
});

async function raw(body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const response = await fetch(platform.url, { method: 'POST', headers: { authorization: `Bearer ${user.accessToken}`, ...headers }, body });
  const text = await response.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // some refusals (e.g. CSRF) may answer in text; still checked for status and stack traces
  }
  return { status: response.status, text, json, codes: (json?.errors ?? []).map((e: any) => e.extensions?.code) };
}

function expectClean(result: { status: number; text: string }) {
  expect(result.status).toBeLessThan(500);
  expect(result.text).not.toMatch(/\s+at\s+\S+\s+\(|node_modules|stacktrace/i);
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('hostile queries', () => {
  it('refuses an over-deep query', async () => {
    const deep = `{ agents { edges { node { id ${'sessions { edges { node { agent { '.repeat(15)} id ${'} } } }'.repeat(15)} } } } }`;
    const result = await raw(JSON.stringify({ query: deep }));
    expectClean(result);
    expect(result.status).toBe(400);
    expect(result.codes).toEqual(['OPERATION_TOO_COMPLEX']);
  });

  it('refuses an alias flood', async () => {
    const aliases = Array.from({ length: 500 }, (_, i) => `a${i}: me { id }`).join(' ');
    const result = await raw(JSON.stringify({ query: `{ ${aliases} }` }));
    expectClean(result);
    expect(result.codes).toEqual(['OPERATION_TOO_COMPLEX']);
  });

  it('refuses a 3 MB body', async () => {
    const result = await raw(JSON.stringify({ query: `{ me { id } }`, variables: { pad: 'x'.repeat(3 * 1024 * 1024) } }));
    expectClean(result);
    expect(result.status).toBe(413);
    expect(result.codes).toEqual(['PAYLOAD_TOO_LARGE']);
  });

  it('refuses malformed JSON, batches and a wrong content type', async () => {
    const malformed = await raw('{"query": "{ me { id } }"');
    expectClean(malformed);
    expect(malformed.status).toBe(400);
    expect(malformed.codes).toEqual(['BAD_REQUEST']);

    const batch = await raw(JSON.stringify([{ query: '{ me { id } }' }, { query: '{ me { id } }' }]));
    expectClean(batch);
    expect(batch.status).toBe(400);

    // A simple cross-site form post: CSRF prevention refuses it before anything runs.
    const form = await raw('query=%7B%20me%20%7B%20id%20%7D%20%7D', { 'content-type': 'application/x-www-form-urlencoded' });
    expectClean(form);
    expect(form.status).toBe(400);
    const text = await raw('{"query":"{ me { id } }"}', { 'content-type': 'text/plain' });
    expectClean(text);
    expect(text.status).toBe(400);
  });
});

describe('hostile tokens', () => {
  const claims = () => ({ sub: user.user.id, iss: 'agent-platform', aud: 'agent-platform-api', iat: Math.floor(Date.now() / 1000) });

  it('refuses forged, expired, premature and misaddressed tokens with UNAUTHENTICATED', async () => {
    const [header, payload, signature] = user.accessToken.split('.');
    const tampered = `${header}.${b64({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: randomUUID() })}.${signature}`;
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`;
    const hsHeader = b64({ alg: 'HS256', typ: 'JWT' });
    const hsBody = b64({ ...claims(), exp: Math.floor(Date.now() / 1000) + 600 });
    const hsWithPublicKey = `${hsHeader}.${hsBody}.${createHmac('sha256', platform.jwt.publicKey).update(`${hsHeader}.${hsBody}`).digest('base64url')}`;
    const sign = (extra: object, options: jwt.SignOptions = {}) => jwt.sign({ ...claims(), ...extra }, platform.jwt.privateKey, { algorithm: 'RS256', ...options });
    const tokens: Record<string, string> = {
      tampered,
      none,
      hsWithPublicKey,
      expired: sign({ exp: Math.floor(Date.now() / 1000) - 60 }),
      notYetValid: sign({ nbf: Math.floor(Date.now() / 1000) + 3600, exp: Math.floor(Date.now() / 1000) + 7200 }),
      wrongIssuer: sign({ iss: 'someone-else', exp: Math.floor(Date.now() / 1000) + 600 }),
      wrongAudience: sign({ aud: 'another-api', exp: Math.floor(Date.now() / 1000) + 600 }),
      garbage: 'a.b.c',
    };
    for (const [name, token] of Object.entries(tokens)) {
      const response = await Client.bearer(platform.url, token).request('{ me { id } }');
      expect(response.status, name).toBe(401);
      expect(errorCodes(response), name).toEqual(['UNAUTHENTICATED']);
      expect(JSON.stringify(response.errors)).not.toMatch(/at \S+ \(/);
    }
  });

  it('refuses an unknown API key', async () => {
    const response = await new Client(platform.url, { 'x-api-key': 'ak_deadbeef_notakeyatall' }).request('{ me { id } }');
    expect(response.status).toBe(401);
    expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
  });

  it('still answers afterwards', async () => {
    expect((await user.client.data('{ me { id } }')).me.id).toBe(user.user.id);
    expect((await fetch(`${platform.routerBase}/healthz`)).status).toBe(200);
  });
});
