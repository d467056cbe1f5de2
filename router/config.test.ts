import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/config.js';
import { generateJwtKeyPair } from '../lib/jwt-keys.js';
import { DEFAULT_CORS_ORIGINS, routerConfigFromEnv } from './config.js';

const KEYS = generateJwtKeyPair();
const EC_KEYS = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
const BASE = { INTERNAL_SECRET: 'x'.repeat(32), JWT_PUBLIC_KEY: KEYS.publicKey };
const SDL = { supergraphSdl: 'schema { query: Query }' };
const dir = mkdtempSync(join(tmpdir(), 'router-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function refusal(env: Record<string, string>, overrides: { supergraphSdl?: string } = SDL): string {
  try {
    routerConfigFromEnv({ ...BASE, ...env }, overrides);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('routerConfigFromEnv', () => {
  it('has the documented defaults', () => {
    const config = routerConfigFromEnv(BASE, SDL);
    expect(config).toMatchObject({
      port: 8000,
      host: '0.0.0.0',
      processes: 1,
      redisUrl: undefined,
      subgraphUrls: { agent: 'http://127.0.0.1:8001', task: 'http://127.0.0.1:8002', memory: 'http://127.0.0.1:8003', auth: 'http://127.0.0.1:8004' },
      jwt: { issuer: 'agent-platform', audience: 'agent-platform-api' },
      apiKeyCacheMs: 1000,
      allowAnonymous: false,
      shareInFlightFetches: true,
      rateLimit: { enabled: true, perMinute: 600, anonPerMinute: 60, authPerMinute: 10 },
      limits: { maxDepth: 12, maxAliases: 30, maxRootFields: 20, maxTokens: 2000, maxCost: 20_000, maxDirectives: 50, defaultListSize: 20 },
      operationLimitsEnabled: true,
      maxBodyBytes: 1024 * 1024,
      corsOrigins: DEFAULT_CORS_ORIGINS,
      sandboxEnabled: true,
      introspectionEnabled: true,
      trustProxyHops: 0,
      logLevel: 'info',
      events: { prefix: 'ap:', retentionSeconds: 86_400 },
      subscriptions: { maxMessageBytes: 65_536, maxPerSocket: 100, connectionInitTimeoutMs: 3000, keepAliveMs: 30_000 },
    });
  });

  it('reads every setting from the environment', () => {
    const config = routerConfigFromEnv(
      {
        ...BASE,
        PORT: '9000',
        ROUTER_PROCESSES: '4',
        REDIS_URL: 'redis://cache:6379',
        AGENT_URL: 'http://agent:8001/graphql',
        ALLOW_ANONYMOUS: 'true',
        OPERATION_LIMITS_ENABLED: 'false',
        SHARE_INFLIGHT_FETCHES: 'false',
        RATE_LIMIT_ENABLED: 'false',
        RATE_LIMIT_PER_MINUTE: '100',
        RATE_LIMIT_ANON_PER_MINUTE: '5',
        RATE_LIMIT_AUTH_PER_MINUTE: '3',
        RATE_LIMIT_PREFIX: 'rl:',
        MAX_QUERY_DEPTH: '8',
        MAX_ALIASES: '4',
        MAX_ROOT_FIELDS: '3',
        MAX_TOKENS: '500',
        MAX_COST: '1000',
        MAX_DIRECTIVES: '2',
        MAX_BODY_BYTES: '2048',
        CORS_ORIGINS: 'https://app.example.com, http://localhost:4000',
        SANDBOX_ENABLED: 'false',
        INTROSPECTION_ENABLED: 'false',
        TRUST_PROXY: '1',
        EVENTS_PREFIX: 'ev:',
        EVENT_RETENTION_SECONDS: '3600',
        WS_MAX_MESSAGE_BYTES: '8192',
        WS_MAX_SUBSCRIPTIONS_PER_SOCKET: '5',
        WS_CONNECTION_INIT_TIMEOUT_MS: '1000',
        WS_KEEP_ALIVE_MS: '0',
      },
      SDL,
    );
    expect(config).toMatchObject({
      port: 9000,
      processes: 4,
      redisUrl: 'redis://cache:6379',
      allowAnonymous: true,
      operationLimitsEnabled: false,
      shareInFlightFetches: false,
      rateLimit: { enabled: false, perMinute: 100, anonPerMinute: 5, authPerMinute: 3, prefix: 'rl:' },
      limits: { maxDepth: 8, maxAliases: 4, maxRootFields: 3, maxTokens: 500, maxCost: 1000, maxDirectives: 2 },
      maxBodyBytes: 2048,
      corsOrigins: ['https://app.example.com', 'http://localhost:4000'],
      sandboxEnabled: false,
      introspectionEnabled: false,
      trustProxyHops: 1,
      events: { prefix: 'ev:', retentionSeconds: 3600 },
      subscriptions: { maxMessageBytes: 8192, maxPerSocket: 5, connectionInitTimeoutMs: 1000, keepAliveMs: 0 },
    });
    expect(config.subgraphUrls.agent).toBe('http://agent:8001');
  });

  it('reads the supergraph from SUPERGRAPH_PATH', () => {
    const path = join(dir, 'supergraph.graphql');
    writeFileSync(path, 'schema { query: Query }\n');
    expect(routerConfigFromEnv({ ...BASE, SUPERGRAPH_PATH: path }).supergraphSdl).toBe('schema { query: Query }\n');
    expect(refusal({ SUPERGRAPH_PATH: join(dir, 'missing.graphql') }, {})).toMatch(/^SUPERGRAPH_PATH must name the composed supergraph SDL/);
  });

  it('stops with one sentence on a bad value', () => {
    expect(refusal({ INTERNAL_SECRET: '' })).toMatch(/^INTERNAL_SECRET must be set/);
    expect(refusal({ INTERNAL_SECRET: 'short' })).toBe('INTERNAL_SECRET must be at least 32 characters long.');
    expect(refusal({ MAX_QUERY_DEPTH: 'deep' })).toMatch(/^MAX_QUERY_DEPTH must be an integer/);
    expect(refusal({ RATE_LIMIT_PER_MINUTE: '0' })).toMatch(/^RATE_LIMIT_PER_MINUTE must be an integer between 1/);
    expect(refusal({ API_KEY_CACHE_MS: '5000' })).toMatch(/^API_KEY_CACHE_MS must be an integer between 0 and 1000/);
    expect(refusal({ RATE_LIMIT_ENABLED: 'maybe' })).toBe('RATE_LIMIT_ENABLED must be true or false, got "maybe".');
    expect(refusal({ ROUTER_PROCESSES: '2' })).toBe('ROUTER_PROCESSES above 1 needs REDIS_URL: the processes share rate limits and task events through Redis.');
    expect(refusal({ ROUTER_PROCESSES: '0' })).toMatch(/^ROUTER_PROCESSES must be an integer between 1/);
    expect(refusal({ ALLOW_ANONYMOUS: 'sometimes' })).toBe('ALLOW_ANONYMOUS must be true or false, got "sometimes".');
    expect(refusal({ OPERATION_LIMITS_ENABLED: 'off-ish' })).toBe('OPERATION_LIMITS_ENABLED must be true or false, got "off-ish".');
    expect(refusal({ REDIS_URL: 'http://cache' })).toMatch(/^REDIS_URL must use redis: or rediss:/);
    expect(refusal({ CORS_ORIGINS: 'https://app.example.com/path' })).toMatch(/^CORS_ORIGINS must be a comma-separated list of origins/);
    expect(refusal({ JWT_PUBLIC_KEY: '' })).toMatch(/^JWT_PUBLIC_KEY/);
    // A key that only looks like PEM, or is not RSA, is refused here rather than crashing startRouter.
    expect(refusal({ JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----' })).toBe(
      'JWT_PUBLIC_KEY (or JWT_PUBLIC_KEY_FILE) must hold the RSA public key in PEM form that verifies access tokens, but it does not parse as one.',
    );
    expect(refusal({ JWT_PUBLIC_KEY: EC_KEYS.publicKey })).toBe(
      'JWT_PUBLIC_KEY (or JWT_PUBLIC_KEY_FILE) must hold the RSA public key in PEM form that verifies access tokens (access tokens are RS256), got a ec key.',
    );
    expect(refusal({ JWT_PUBLIC_KEY: '', JWT_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----' })).toMatch(
      /^JWT_PRIVATE_KEY \(or JWT_PRIVATE_KEY_FILE\), from which the public key is derived .* does not parse as one\.$/,
    );
    expect(routerConfigFromEnv({ ...BASE, JWT_PUBLIC_KEY: '', JWT_PRIVATE_KEY: KEYS.privateKey }, SDL).jwt.publicKey).toBe(KEYS.publicKey);
    expect(refusal({ WS_MAX_SUBSCRIPTIONS_PER_SOCKET: '0' })).toMatch(/^WS_MAX_SUBSCRIPTIONS_PER_SOCKET must be an integer between 1/);
    expect(refusal({ WS_MAX_MESSAGE_BYTES: 'big' })).toMatch(/^WS_MAX_MESSAGE_BYTES must be an integer/);
  });
});
