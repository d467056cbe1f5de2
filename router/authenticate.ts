import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { appError, unauthenticatedRequest } from '../lib/errors.js';
import { JWT_ALGORITHM } from '../lib/jwt-keys.js';
import { ANONYMOUS, PRINCIPAL_HEADER, REQUEST_ID_HEADER, SCOPES, signPrincipalProof, type Principal, type Scope } from '../lib/principal.js';

/**
 * Who is calling: a user with an access token (RS256 JWT), an API key (resolved by the auth
 * service), or nobody. A credential that is present but wrong is refused, never downgraded to
 * anonymous.
 */
export interface AuthenticatorOptions {
  /** PEM or key object of the RSA public key that verifies access tokens. */
  publicKey: string | KeyObject;
  issuer: string;
  audience: string;
  /** Base URL of the auth service; API keys are resolved at `POST <url>/internal/api-keys/verify`. */
  authServiceUrl: string;
  /** Signs the router's own proof when it calls the auth service. */
  internalSecret: string;
  log: Logger;
  /** How long an API key answer (valid or not) is reused; at most 1000 so revocation bites within 2 s. @default 1000 */
  apiKeyCacheMs?: number;
  /** An API key lookup slower than this fails with SERVICE_UNAVAILABLE. @default 3000 */
  apiKeyTimeoutMs?: number;
  /** Verified access tokens remembered so a repeated token skips the RSA check. @default 10000 */
  maxCachedTokens?: number;
}

/** Credentials as they arrive, straight from the request headers. */
export interface Credentials {
  authorization?: string;
  apiKey?: string;
}

/** Root fields an anonymous caller may run: signing in and out, `me` (null) and introspection. */
export const ANONYMOUS_ROOT_FIELDS: ReadonlySet<string> = new Set([
  'signUp',
  'login',
  'refreshToken',
  'logout',
  'me',
  '__schema',
  '__type',
  '__typename',
]);

/** Login, sign-up and refresh are where passwords and refresh tokens get guessed: limited per IP. */
export const CREDENTIAL_ROOT_FIELDS: ReadonlySet<string> = new Set(['signUp', 'login', 'refreshToken']);

/** UNAUTHENTICATED when an anonymous caller selects anything outside {@link ANONYMOUS_ROOT_FIELDS}. */
export function anonymousRefusal(principal: Principal, rootFieldNames: readonly string[]): GraphQLError | undefined {
  if (principal.kind !== 'anonymous') return undefined;
  const refused = rootFieldNames.find((name) => !ANONYMOUS_ROOT_FIELDS.has(name));
  if (refused === undefined) return undefined;
  return unauthenticatedRequest(`Authentication required for "${refused}": send "Authorization: Bearer <access token or API key>" or "x-api-key".`);
}

/** The id rate limits and logs use for a principal. */
export function principalId(principal: Principal): string {
  switch (principal.kind) {
    case 'user':
      return principal.userId;
    case 'api_key':
      return principal.apiKeyId;
    case 'service':
      return principal.service;
    case 'anonymous':
      return 'anonymous';
  }
}

/**
 * Real API keys are 55 characters. A longer "key" is refused without a lookup: it cannot be one,
 * and the auth service's 4 KB body limit would answer it with an error the router must treat as
 * the service failing (503) rather than as a wrong key (401).
 */
export const MAX_API_KEY_LENGTH = 512;

/** Three base64url segments: header.payload.signature. Anything else after "Bearer" is an API key. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

type ApiKeyAnswer = Principal | null;

interface AccessClaims {
  sub?: unknown;
  exp?: number;
  nbf?: number;
}

export class Authenticator {
  private readonly publicKey: KeyObject;
  private readonly apiKeyCacheMs: number;
  private readonly verifyUrl: string;
  /** sha256(secret) → answer; the secret itself is never kept. */
  private readonly apiKeys = new Map<string, { answer: ApiKeyAnswer; expiresAt: number }>();
  private readonly inFlight = new Map<string, Promise<ApiKeyAnswer>>();
  /**
   * Verified access token → principal and validity window (seconds, re-checked on every hit), so a
   * repeated token skips the RSA check. Keyed by the token itself: it is a short-lived credential
   * already held in memory for its request, and leaves this map when it expires or is pushed out.
   */
  private readonly tokens = new Map<string, { principal: Principal; exp: number; nbf: number }>();

  constructor(private readonly options: AuthenticatorOptions) {
    // A KeyObject made once: jsonwebtoken would otherwise parse the PEM on every verify.
    this.publicKey = typeof options.publicKey === 'string' ? createPublicKey(options.publicKey) : options.publicKey;
    this.apiKeyCacheMs = Math.min(options.apiKeyCacheMs ?? 1000, 1000);
    this.verifyUrl = `${options.authServiceUrl.replace(/\/+$/, '')}/internal/api-keys/verify`;
  }

  /** The principal for these credentials; throws UNAUTHENTICATED (401) or SERVICE_UNAVAILABLE. */
  async authenticate(credentials: Credentials, requestId?: string): Promise<Principal> {
    const { authorization, apiKey } = credentials;
    if (authorization === undefined && apiKey === undefined) return ANONYMOUS;
    if (authorization !== undefined && apiKey !== undefined) {
      throw unauthenticatedRequest('Send one credential: either an Authorization header or an x-api-key header, not both.');
    }
    if (apiKey !== undefined) return this.resolveApiKey(apiKey.trim(), requestId);
    const bearer = BEARER.exec(authorization!);
    if (!bearer) throw unauthenticatedRequest('The Authorization header must be "Bearer <access token or API key>".');
    const credential = bearer[1];
    return JWT_SHAPE.test(credential) ? this.verifyAccessToken(credential) : this.resolveApiKey(credential, requestId);
  }

  private verifyAccessToken(token: string): Principal {
    const now = Math.floor(Date.now() / 1000);
    const cached = this.tokens.get(token);
    if (cached && now < cached.exp && now >= cached.nbf) return cached.principal;
    if (cached) this.tokens.delete(token);

    let claims: AccessClaims;
    try {
      claims = jwt.verify(token, this.publicKey, {
        algorithms: [JWT_ALGORITHM],
        issuer: this.options.issuer,
        audience: this.options.audience,
      }) as AccessClaims;
    } catch (error) {
      if (error instanceof jwt.TokenExpiredError) throw unauthenticatedRequest('The access token has expired; refresh it or log in again.');
      if (error instanceof jwt.NotBeforeError) throw unauthenticatedRequest('The access token is not valid yet.');
      throw unauthenticatedRequest('The access token is invalid.');
    }
    // jsonwebtoken checks exp only when it is there; an access token that would never expire is refused.
    if (typeof claims.exp !== 'number') throw unauthenticatedRequest('The access token has no expiry; log in again.');
    if (typeof claims.sub !== 'string' || claims.sub === '') throw unauthenticatedRequest('The access token names no user.');
    const principal: Principal = { kind: 'user', userId: claims.sub, scopes: [...SCOPES] };
    this.remember(token, { principal, exp: claims.exp, nbf: claims.nbf ?? 0 });
    return principal;
  }

  private remember(token: string, entry: { principal: Principal; exp: number; nbf: number }): void {
    if (this.tokens.size >= (this.options.maxCachedTokens ?? 10_000)) {
      // Oldest first; dropping a live entry only costs one more RSA check.
      const oldest = this.tokens.keys().next();
      if (!oldest.done) this.tokens.delete(oldest.value);
    }
    this.tokens.set(token, entry);
  }

  private async resolveApiKey(secret: string, requestId: string | undefined): Promise<Principal> {
    if (secret === '') throw unauthenticatedRequest('The API key is empty.');
    if (secret.length > MAX_API_KEY_LENGTH) throw unauthenticatedRequest('The API key is invalid or has been revoked.');
    const hash = createHash('sha256').update(secret).digest('base64url');
    const now = Date.now();
    const cached = this.apiKeys.get(hash);
    let answer: ApiKeyAnswer;
    if (cached && cached.expiresAt > now) {
      answer = cached.answer;
    } else {
      // One lookup per key at a time: concurrent requests with the same key wait for the same answer.
      let pending = this.inFlight.get(hash);
      if (!pending) {
        pending = this.lookUpApiKey(secret, requestId).finally(() => this.inFlight.delete(hash));
        this.inFlight.set(hash, pending);
      }
      answer = await pending;
      this.cacheApiKey(hash, answer);
    }
    if (!answer) throw unauthenticatedRequest('The API key is invalid or has been revoked.');
    return answer;
  }

  private cacheApiKey(hash: string, answer: ApiKeyAnswer): void {
    if (this.apiKeyCacheMs === 0) return;
    const now = Date.now();
    if (this.apiKeys.size >= 10_000) {
      for (const [key, entry] of this.apiKeys) if (entry.expiresAt <= now) this.apiKeys.delete(key);
      if (this.apiKeys.size >= 10_000) this.apiKeys.clear();
    }
    this.apiKeys.set(hash, { answer, expiresAt: now + this.apiKeyCacheMs });
  }

  /** Asks the auth service; null means unknown or revoked (404). Other failures are not cached. */
  private async lookUpApiKey(secret: string, requestId: string | undefined): Promise<ApiKeyAnswer> {
    const proof = signPrincipalProof({ kind: 'service', service: 'router', scopes: [] }, this.options.internalSecret, requestId);
    let response: Response;
    try {
      response = await fetch(this.verifyUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [PRINCIPAL_HEADER]: proof,
          ...(requestId ? { [REQUEST_ID_HEADER]: requestId } : {}),
        },
        body: JSON.stringify({ secret }),
        signal: AbortSignal.timeout(this.options.apiKeyTimeoutMs ?? 3000),
      });
    } catch (error) {
      this.options.log.error({ err: error, requestId }, 'API key lookup failed: auth service unreachable');
      throw apiKeyUnavailable();
    }
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    const body = (await response.json().catch(() => undefined)) as { userId?: unknown; apiKeyId?: unknown; scopes?: unknown } | undefined;
    if (!response.ok || typeof body?.userId !== 'string' || typeof body.apiKeyId !== 'string' || !Array.isArray(body.scopes)) {
      this.options.log.error({ requestId, status: response.status }, 'API key lookup failed: unexpected answer from the auth service');
      throw apiKeyUnavailable();
    }
    const scopes = body.scopes.filter((scope): scope is Scope => (SCOPES as readonly unknown[]).includes(scope));
    return { kind: 'api_key', userId: body.userId, apiKeyId: body.apiKeyId, scopes };
  }
}

function apiKeyUnavailable(): GraphQLError {
  return appError('SERVICE_UNAVAILABLE', 'The API key cannot be checked right now; try again shortly.', { http: { status: 503 } });
}
