import { generateKeyPairSync, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, envString } from './config.js';

type Env = Record<string, string | undefined>;

/** Access tokens: RS256 only, signed by the auth service, verified by the router with the public key. */
export const JWT_ALGORITHM = 'RS256' as const;

export interface JwtSettings {
  issuer: string;
  audience: string;
}

export function readJwtSettings(env: Env): JwtSettings {
  return {
    issuer: envString(env, 'JWT_ISSUER', 'agent-platform'),
    audience: envString(env, 'JWT_AUDIENCE', 'agent-platform-api'),
  };
}

/** PEM from `<NAME>` (newlines may be written as \n) or from the file named by `<NAME>_FILE`. */
function readPem(env: Env, name: string): string | undefined {
  const inline = envString(env, name);
  if (inline) return inline.replace(/\\n/g, '\n');
  const file = envString(env, `${name}_FILE`);
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new ConfigError(`${name}_FILE must name a readable PEM file, got "${file}".`);
  }
}

/** The private key (auth service). */
export function readJwtPrivateKey(env: Env): string {
  const pem = readPem(env, 'JWT_PRIVATE_KEY');
  if (!pem || !pem.includes('PRIVATE KEY')) {
    throw new ConfigError('JWT_PRIVATE_KEY (or JWT_PRIVATE_KEY_FILE) must hold the RSA private key in PEM form that signs access tokens.');
  }
  return pem;
}

/**
 * The public key (router); derived from the private key when only that one is given. Parsed here,
 * so that a key that is not RSA PEM stops the process with one sentence at start instead of a
 * stack trace when the router builds its verifier (or every token failing later).
 */
export function readJwtPublicKey(env: Env): string {
  const pem = readPem(env, 'JWT_PUBLIC_KEY');
  if (pem && pem.includes('PUBLIC KEY')) {
    rsaKey(() => createPublicKey(pem), 'JWT_PUBLIC_KEY (or JWT_PUBLIC_KEY_FILE) must hold the RSA public key in PEM form that verifies access tokens');
    return pem;
  }
  const privatePem = readPem(env, 'JWT_PRIVATE_KEY');
  if (privatePem) {
    const key = rsaKey(() => createPublicKey(privatePem), 'JWT_PRIVATE_KEY (or JWT_PRIVATE_KEY_FILE), from which the public key is derived when JWT_PUBLIC_KEY is unset, must hold an RSA private key in PEM form');
    return key.export({ type: 'spki', format: 'pem' }).toString();
  }
  throw new ConfigError('JWT_PUBLIC_KEY (or JWT_PUBLIC_KEY_FILE) must hold the RSA public key in PEM form that verifies access tokens.');
}

/** The parsed key, or a ConfigError: `expected` followed by what was wrong with it. */
function rsaKey(parse: () => KeyObject, expected: string): KeyObject {
  let key: KeyObject;
  try {
    key = parse();
  } catch {
    throw new ConfigError(`${expected}, but it does not parse as one.`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw new ConfigError(`${expected} (access tokens are ${JWT_ALGORITHM}), got a ${key.asymmetricKeyType ?? 'non-asymmetric'} key.`);
  return key;
}

export function generateJwtKeyPair(): { privateKey: string; publicKey: string } {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

/** Embedded mode: a key pair kept under `<dataDir>/keys`, made on first start. */
export function loadOrCreateJwtKeys(dataDir: string): { privateKey: string; publicKey: string } {
  const dir = join(dataDir, 'keys');
  const privatePath = join(dir, 'jwt-private.pem');
  const publicPath = join(dir, 'jwt-public.pem');
  if (existsSync(privatePath) && existsSync(publicPath)) {
    return { privateKey: readFileSync(privatePath, 'utf8'), publicKey: readFileSync(publicPath, 'utf8') };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pair = generateJwtKeyPair();
  writeFileSync(privatePath, pair.privateKey, { mode: 0o600 });
  writeFileSync(publicPath, pair.publicKey);
  return pair;
}
