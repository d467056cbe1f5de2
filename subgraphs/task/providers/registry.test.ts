import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../lib/config.js';
import { createProviderRegistry, providerConfigFromEnv } from './registry.js';
import type { LlmProvider } from './types.js';

describe('provider configuration', () => {
  it('has defaults that run echo only', () => {
    const config = providerConfigFromEnv({});
    expect(config).toEqual({
      openai: { baseURL: 'https://api.openai.com/v1', apiKey: undefined, configured: false },
      anthropic: { baseURL: 'https://api.anthropic.com', apiKey: undefined },
      echo: { tokenDelayMs: 20 },
      retry: { maxRetries: 3, stallTimeoutMs: 30_000 },
      contextWindows: {},
    });
    const registry = createProviderRegistry(config);
    expect(registry.available).toEqual(['echo']);
    expect(registry.get('echo')?.name).toBe('echo');
    expect(registry.check('echo')).toBeNull();
  });

  it('says what to set for a provider that is not configured, and names the known ones for an unknown', () => {
    const registry = createProviderRegistry(providerConfigFromEnv({}));
    expect(registry.get('openai')).toBeUndefined();
    expect(registry.check('openai')).toBe(
      'openai is not configured: set OPENAI_API_KEY, or OPENAI_BASE_URL for a local OpenAI-compatible server such as Ollama.',
    );
    expect(registry.check('anthropic')).toBe('anthropic is not configured: set ANTHROPIC_API_KEY.');
    expect(registry.check('gemini')).toBe('Unknown provider "gemini": use one of openai, anthropic, echo.');
    expect(registry.check('constructor')).toBe('Unknown provider "constructor": use one of openai, anthropic, echo.');
  });

  it('counts openai as configured by a key or by a base URL alone', () => {
    const byKey = createProviderRegistry(providerConfigFromEnv({ OPENAI_API_KEY: 'sk-1', ANTHROPIC_API_KEY: 'sk-ant-1' }));
    expect(byKey.available).toEqual(['echo', 'openai', 'anthropic']);
    expect(byKey.check('anthropic')).toBeNull();
    const local = providerConfigFromEnv({ OPENAI_BASE_URL: 'http://localhost:11434/v1/' });
    expect(local.openai).toEqual({ baseURL: 'http://localhost:11434/v1', apiKey: undefined, configured: true });
    expect(createProviderRegistry(local).check('openai')).toBeNull();
  });

  it('stops on a bad value with one sentence naming the variable', () => {
    expect(() => providerConfigFromEnv({ OPENAI_BASE_URL: 'localhost:11434' })).toThrow(/^OPENAI_BASE_URL must use http: or https:/);
    expect(() => providerConfigFromEnv({ ANTHROPIC_BASE_URL: 'not a url' })).toThrow(/^ANTHROPIC_BASE_URL must be a URL/);
    expect(() => providerConfigFromEnv({ ECHO_TOKEN_DELAY_MS: 'fast' })).toThrow(/^ECHO_TOKEN_DELAY_MS must be an integer between 0 and 60000/);
    expect(() => providerConfigFromEnv({ LLM_STALL_TIMEOUT_MS: '5' })).toThrow(ConfigError);
    expect(() => providerConfigFromEnv({ MODEL_CONTEXT_WINDOWS: '{"a":' })).toThrow(/^MODEL_CONTEXT_WINDOWS must be a JSON object/);
  });

  it('reads the tuning variables', () => {
    const config = providerConfigFromEnv({ ECHO_TOKEN_DELAY_MS: '0', LLM_MAX_RETRIES: '5', LLM_STALL_TIMEOUT_MS: '1000', MODEL_CONTEXT_WINDOWS: '{"m":1000}' });
    expect(config.echo.tokenDelayMs).toBe(0);
    expect(config.retry).toEqual({ maxRetries: 5, stallTimeoutMs: 1000 });
    expect(config.contextWindows).toEqual({ m: 1000 });
  });

  it('takes injected providers, for tests of the code that uses it', () => {
    const fake: LlmProvider = { name: 'openai', stream: async function* () {} };
    const registry = createProviderRegistry(providerConfigFromEnv({}), { providers: { openai: fake } });
    expect(registry.get('openai')).toBe(fake);
    expect(registry.check('openai')).toBeNull();
  });
});
