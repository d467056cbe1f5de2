/**
 * Which providers this process can run, from the environment. `echo` always works; `openai` and
 * `anthropic` only when configured, and `check` says what to set when they are not.
 *
 * Variables: OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY,
 * ECHO_TOKEN_DELAY_MS, LLM_MAX_RETRIES, LLM_STALL_TIMEOUT_MS, MODEL_CONTEXT_WINDOWS.
 */
import { envInt, envString, envUrl } from '../../../lib/config.js';
import { createAnthropicProvider, ANTHROPIC_DEFAULT_BASE_URL } from './anthropic.js';
import { createEchoProvider } from './echo.js';
import { contextWindowsFromEnv, type ContextWindowOverrides } from './models.js';
import { createOpenAiProvider, OPENAI_DEFAULT_BASE_URL } from './openai.js';
import type { LlmProvider } from './types.js';

type Env = Record<string, string | undefined>;

export const PROVIDER_NAMES = ['openai', 'anthropic', 'echo'] as const;
export type ProviderName = (typeof PROVIDER_NAMES)[number];

/** Sent when only OPENAI_BASE_URL is set: local servers (Ollama, vLLM, …) ignore the key, the SDK needs one. */
export const OPENAI_PLACEHOLDER_KEY = 'not-needed';

export interface ProviderConfig {
  openai: {
    /** `OPENAI_BASE_URL`, default https://api.openai.com/v1. */
    baseURL: string;
    /** `OPENAI_API_KEY`; undefined when unset. */
    apiKey: string | undefined;
    /** A key is set, or OPENAI_BASE_URL points at a (local) server that may need none. */
    configured: boolean;
  };
  anthropic: {
    /** `ANTHROPIC_BASE_URL`, default https://api.anthropic.com. */
    baseURL: string;
    /** `ANTHROPIC_API_KEY`; the provider is available only when it is set. */
    apiKey: string | undefined;
  };
  echo: {
    /** `ECHO_TOKEN_DELAY_MS`, default 20; 0 for benchmarks. */
    tokenDelayMs: number;
  };
  /** Options for `streamWithRetries`, to spread beside the signal. */
  retry: {
    /** `LLM_MAX_RETRIES`, default 3. */
    maxRetries: number;
    /** `LLM_STALL_TIMEOUT_MS`, default 30000. */
    stallTimeoutMs: number;
  };
  /** `MODEL_CONTEXT_WINDOWS`: for `contextWindow`. */
  contextWindows: ContextWindowOverrides;
}

/** Reads the provider settings; a bad value throws a ConfigError naming the variable. */
export function providerConfigFromEnv(env: Env = process.env): ProviderConfig {
  const openaiBaseUrl = envUrl(env, 'OPENAI_BASE_URL', ['http:', 'https:']);
  const openaiKey = envString(env, 'OPENAI_API_KEY');
  return {
    openai: {
      baseURL: trimSlash(openaiBaseUrl ?? OPENAI_DEFAULT_BASE_URL),
      apiKey: openaiKey,
      configured: openaiKey !== undefined || openaiBaseUrl !== undefined,
    },
    anthropic: {
      baseURL: trimSlash(envUrl(env, 'ANTHROPIC_BASE_URL', ['http:', 'https:'], ANTHROPIC_DEFAULT_BASE_URL)),
      apiKey: envString(env, 'ANTHROPIC_API_KEY'),
    },
    echo: { tokenDelayMs: envInt(env, 'ECHO_TOKEN_DELAY_MS', 20, { min: 0, max: 60_000 }) },
    retry: {
      maxRetries: envInt(env, 'LLM_MAX_RETRIES', 3, { min: 0, max: 20 }),
      stallTimeoutMs: envInt(env, 'LLM_STALL_TIMEOUT_MS', 30_000, { min: 100, max: 3_600_000 }),
    },
    contextWindows: contextWindowsFromEnv(env),
  };
}

export interface ProviderRegistry {
  /** The provider by name, or undefined when it is unknown or not configured. */
  get(name: string): LlmProvider | undefined;
  /** Null when `name` can run; otherwise one sentence saying why not and what to set. */
  check(name: string): string | null;
  /** The providers that can run here. */
  readonly available: readonly string[];
}

export interface ProviderRegistryOptions {
  /** Providers to use instead of (or beside) the built-in ones, by name: fakes in tests, for example. */
  providers?: Readonly<Record<string, LlmProvider>>;
}

export function createProviderRegistry(config: ProviderConfig, options: ProviderRegistryOptions = {}): ProviderRegistry {
  const providers = new Map<string, LlmProvider>();
  providers.set('echo', createEchoProvider({ tokenDelayMs: config.echo.tokenDelayMs }));
  if (config.openai.configured) {
    providers.set('openai', createOpenAiProvider({ baseURL: config.openai.baseURL, apiKey: config.openai.apiKey ?? OPENAI_PLACEHOLDER_KEY }));
  }
  if (config.anthropic.apiKey !== undefined) {
    providers.set('anthropic', createAnthropicProvider({ baseURL: config.anthropic.baseURL, apiKey: config.anthropic.apiKey }));
  }
  for (const [name, provider] of Object.entries(options.providers ?? {})) providers.set(name, provider);

  const unconfigured = new Map<string, string>([
    ['openai', 'openai is not configured: set OPENAI_API_KEY, or OPENAI_BASE_URL for a local OpenAI-compatible server such as Ollama.'],
    ['anthropic', 'anthropic is not configured: set ANTHROPIC_API_KEY.'],
  ]);
  return {
    get: (name) => providers.get(name),
    check(name) {
      if (providers.has(name)) return null;
      return unconfigured.get(name) ?? `Unknown provider "${name}": use one of ${[...new Set([...PROVIDER_NAMES, ...providers.keys()])].join(', ')}.`;
    },
    available: [...providers.keys()],
  };
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}
