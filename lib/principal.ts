import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { forbidden, unauthenticated, unauthenticatedRequest } from './errors.js';

/** Header carrying the router's signed statement of who is calling (router → subgraph). */
export const PRINCIPAL_HEADER = 'x-principal-proof';
/** Correlates one client request across the router and the subgraphs. */
export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * What an API key may be limited to. A JWT (a logged-in user) holds all of them. A key created
 * without scopes holds all of them too; `keys:write` is never implied for keys, so a leaked key
 * cannot mint more keys unless it was created with that scope explicitly.
 */
export const SCOPES = [
  'agents:read',
  'agents:write',
  'memory:read',
  'memory:write',
  'tasks:read',
  'tasks:write',
  'keys:read',
  'keys:write',
] as const;
export type Scope = (typeof SCOPES)[number];
export const DEFAULT_API_KEY_SCOPES: Scope[] = SCOPES.filter((s) => s !== 'keys:write');

export type Principal =
  | { kind: 'anonymous'; scopes: [] }
  | { kind: 'user'; userId: string; scopes: Scope[] }
  | { kind: 'api_key'; userId: string; apiKeyId: string; scopes: Scope[] }
  /** A service calling another service on its own behalf (for example the router resolving an API key). */
  | { kind: 'service'; service: string; scopes: [] };

export const ANONYMOUS: Principal = { kind: 'anonymous', scopes: [] };

const AUDIENCE = 'agent-platform-subgraphs';
const ISSUER = 'agent-platform-router';

/**
 * Proofs are HS256 JWTs (RFC 7519), made and checked here with one HMAC: jsonwebtoken's general
 * path (options parsing, key handling, claim checks) cost about 5% of the router's and of each
 * subgraph's CPU per request, for the one shape of token that travels between our own services.
 */
const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

// A string secret turned into a key once (jsonwebtoken did it on every call, ~270 µs).
const hmacKeys = new Map<string, KeyObject>();
function hmacKey(secret: string): KeyObject {
  let key = hmacKeys.get(secret);
  if (!key) hmacKeys.set(secret, (key = createSecretKey(Buffer.from(secret, 'utf8'))));
  return key;
}

const signature = (signingInput: string, secret: string): Buffer => createHmac('sha256', hmacKey(secret)).update(signingInput).digest();

interface ProofClaims {
  knd: Principal['kind'];
  sub?: string;
  kid?: string;
  svc?: string;
  scp?: string[];
  rid?: string;
  iat?: number;
  exp?: number;
  aud?: string;
  iss?: string;
}

/** Signs the principal for one request; subgraphs refuse requests without a valid proof. */
export function signPrincipalProof(principal: Principal, secret: string, requestId?: string, ttlSeconds = 60): string {
  const now = Math.floor(Date.now() / 1000);
  const claims: ProofClaims = { knd: principal.kind, rid: requestId };
  if (principal.kind === 'user' || principal.kind === 'api_key') {
    claims.sub = principal.userId;
    claims.scp = principal.scopes;
  }
  if (principal.kind === 'api_key') claims.kid = principal.apiKeyId;
  if (principal.kind === 'service') claims.svc = principal.service;
  Object.assign(claims, { iat: now, exp: now + ttlSeconds, aud: AUDIENCE, iss: ISSUER });
  const signingInput = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${signingInput}.${signature(signingInput, secret).toString('base64url')}`;
}

/**
 * Proofs for requests that need no request id in them, one per principal, reused for half their
 * lifetime: the router signs once per caller every 30 s instead of once per request, and a
 * subgraph that checked a proof recognises it (see verifyPrincipalProof). Reuse grants nothing new:
 * any proof is good for any request until it expires.
 */
export class ProofCache {
  private static readonly shared = new Map<string, ProofCache>();
  private readonly proofs = new Map<string, { proof: string; renewAt: number }>();

  /** The process's cache for this secret. */
  static for(secret: string): ProofCache {
    let cache = ProofCache.shared.get(secret);
    if (!cache) ProofCache.shared.set(secret, (cache = new ProofCache(secret)));
    return cache;
  }

  constructor(
    private readonly secret: string,
    private readonly ttlSeconds = 60,
    private readonly maxEntries = 10_000,
  ) {}

  proofFor(principal: Principal): string {
    const key = JSON.stringify(principal);
    const now = Date.now();
    const cached = this.proofs.get(key);
    if (cached && cached.renewAt > now) return cached.proof;
    if (this.proofs.size >= this.maxEntries) this.proofs.clear();
    const proof = signPrincipalProof(principal, this.secret, undefined, this.ttlSeconds);
    this.proofs.set(key, { proof, renewAt: now + (this.ttlSeconds * 1000) / 2 });
    return proof;
  }
}

type VerifiedProof = { principal: Principal; requestId?: string };

/** Proofs this process checked, until they expire: the router reuses one per caller (ProofCache). */
const verified = new Map<string, { secret: string; result: VerifiedProof; expiresAt: number }>();
const MAX_VERIFIED = 10_000;

function principalOf(claims: ProofClaims): VerifiedProof | null {
  const scopes = (claims.scp ?? []).filter((s): s is Scope => (SCOPES as readonly string[]).includes(s));
  switch (claims.knd) {
    case 'user':
      return claims.sub ? { principal: { kind: 'user', userId: claims.sub, scopes }, requestId: claims.rid } : null;
    case 'api_key':
      return claims.sub && claims.kid ? { principal: { kind: 'api_key', userId: claims.sub, apiKeyId: claims.kid, scopes }, requestId: claims.rid } : null;
    case 'service':
      return claims.svc ? { principal: { kind: 'service', service: claims.svc, scopes: [] }, requestId: claims.rid } : null;
    case 'anonymous':
      return { principal: ANONYMOUS, requestId: claims.rid };
    default:
      return null;
  }
}

/** Verifies a proof; throws UNAUTHENTICATED when it is missing, forged or expired. */
export function verifyPrincipalProof(token: string | undefined, secret: string): VerifiedProof {
  if (!token) throw unauthenticatedRequest('This service only answers requests that come through the router.');
  const now = Date.now();
  // A hit is this very token, signature included, checked before with the same secret.
  const known = verified.get(token);
  if (known && known.secret === secret) {
    if (known.expiresAt > now) return known.result;
    verified.delete(token);
  }
  const parts = token.split('.');
  const invalid = () => unauthenticatedRequest('Invalid or expired router proof.');
  // Only our own header: an alg of "none" or any other algorithm is refused before anything else.
  if (parts.length !== 3 || parts[0] !== HEADER) throw invalid();
  const expected = signature(`${parts[0]}.${parts[1]}`, secret);
  const given = Buffer.from(parts[2], 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid();
  let claims: ProofClaims;
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as ProofClaims;
  } catch {
    throw invalid();
  }
  if (claims === null || typeof claims !== 'object' || claims.aud !== AUDIENCE || claims.iss !== ISSUER) throw invalid();
  if (typeof claims.exp !== 'number' || claims.exp * 1000 <= now) throw invalid();
  const result = principalOf(claims);
  if (!result) throw unauthenticatedRequest('Invalid router proof.');
  // Shared by every request that shows this token: nobody may change it.
  Object.freeze(result.principal.scopes);
  Object.freeze(result.principal);
  if (verified.size >= MAX_VERIFIED) verified.clear();
  verified.set(token, { secret, result: Object.freeze(result), expiresAt: claims.exp * 1000 });
  return result;
}

/** The user id of an authenticated caller, or UNAUTHENTICATED. */
export function requireUser(principal: Principal): string {
  if (principal.kind === 'user' || principal.kind === 'api_key') return principal.userId;
  throw unauthenticated();
}

/** The caller's user id when it holds `scope`; UNAUTHENTICATED when anonymous, FORBIDDEN without the scope. */
export function requireScope(principal: Principal, scope: Scope): string {
  const userId = requireUser(principal);
  if (!(principal.scopes as string[]).includes(scope)) {
    throw forbidden(`This API key lacks the "${scope}" scope.`);
  }
  return userId;
}

/** The owner id to filter by in entity references: null for anonymous callers (they see nothing). */
export function ownerOf(principal: Principal): string | null {
  return principal.kind === 'user' || principal.kind === 'api_key' ? principal.userId : null;
}
