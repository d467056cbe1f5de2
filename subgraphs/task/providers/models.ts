/**
 * How many tokens a model can take in (prompt and answer together), and a rough token count for
 * text, so a worker can fit a session's history into the model's budget.
 */
import { ConfigError } from '../../../lib/config.js';

/** Used for a model the table does not know and no override names. Small on purpose: it is safe. */
export const DEFAULT_CONTEXT_WINDOW = 8192;

/** Context windows by model name (exact, or a prefix when the key ends with `*`), from `MODEL_CONTEXT_WINDOWS`. */
export type ContextWindowOverrides = Readonly<Record<string, number>>;

/**
 * Native context windows of well-known models; the first match wins, so narrower patterns come
 * first. Names are matched without any `org/` prefix (vLLM serves `meta-llama/Llama-3.1-8B`), case
 * insensitive. Local servers may run a model with a smaller window than its native one (Ollama's
 * `num_ctx`): set MODEL_CONTEXT_WINDOWS to what the server really uses.
 */
const KNOWN_MODELS: ReadonlyArray<readonly [RegExp, number]> = [
  [/^gpt-4\.1/, 1_047_576],
  [/^gpt-4o/, 128_000], // gpt-4o, gpt-4o-mini and dated versions
  [/^gpt-4-turbo/, 128_000],
  [/^gpt-4-32k/, 32_768],
  [/^gpt-4(-\d+)?$/, 8_192],
  [/^gpt-3\.5-turbo/, 16_385],
  [/^gpt-5/, 400_000],
  [/^o1-mini/, 128_000],
  [/^o[134]/, 200_000], // o1, o3, o3-mini, o4-mini
  [/^claude-/, 200_000], // claude-3*, claude-3-5/3-7*, claude-sonnet-4*, claude-opus-4*, claude-haiku*
  [/^llama-?3[.-][123]/, 131_072], // llama3.1, llama3.2, llama3.3 (and Llama-3.1-…)
  [/^llama-?3/, 8_192],
  [/^(mistral-(nemo|large|small)|mistral-medium)/, 131_072],
  [/^(mistral|mixtral)/, 32_768],
  [/^qwen/, 32_768],
];

/** Every Claude model has had at least 200k tokens; a new one is safer at that than at 8k. */
const PROVIDER_DEFAULTS: Readonly<Record<string, number>> = { anthropic: 200_000 };

/** The context window of `model` on `provider`, in tokens: override, then table, then a default. */
export function contextWindow(provider: string, model: string, overrides: ContextWindowOverrides = {}): number {
  const exact = overrides[model];
  if (exact !== undefined) return exact;
  let bestPrefix = '';
  for (const key of Object.keys(overrides)) {
    if (key.endsWith('*') && model.startsWith(key.slice(0, -1)) && key.length > bestPrefix.length) bestPrefix = key;
  }
  if (bestPrefix) return overrides[bestPrefix];
  const name = model.slice(model.lastIndexOf('/') + 1).toLowerCase();
  for (const [pattern, tokens] of KNOWN_MODELS) if (pattern.test(name)) return tokens;
  return PROVIDER_DEFAULTS[provider] ?? DEFAULT_CONTEXT_WINDOW;
}

/**
 * Reads `MODEL_CONTEXT_WINDOWS`, a JSON object from model name (or `prefix*`) to a positive integer,
 * e.g. `{"llama3.1:8b":8192,"my-finetune-*":32768}`. Unset means no overrides.
 */
export function contextWindowsFromEnv(env: Record<string, string | undefined>): ContextWindowOverrides {
  const raw = env.MODEL_CONTEXT_WINDOWS?.trim();
  if (!raw) return {};
  const usage = 'MODEL_CONTEXT_WINDOWS must be a JSON object from model names to positive integers, e.g. {"llama3.1:8b":8192}';
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError(`${usage}, got text that is not JSON.`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`${usage}.`);
  const windows: Record<string, number> = {};
  for (const [model, tokens] of Object.entries(parsed)) {
    if (!Number.isSafeInteger(tokens) || (tokens as number) <= 0) {
      throw new ConfigError(`${usage}, got ${JSON.stringify(tokens)} for "${model}".`);
    }
    windows[model] = tokens as number;
  }
  return windows;
}

/**
 * A rough token count: UTF-8 bytes / 4, rounded up. English text averages about four characters per
 * token with the BPE tokenizers of GPT, Claude and Llama; counting bytes rather than characters
 * weighs non-Latin scripts (two to four bytes per character) more, where those tokenizers also
 * spend more tokens per character. No tokenizer is installed and each model has its own, so this
 * is an estimate: leave headroom (and the answer's `maxTokens`) when filling a context window.
 */
export function estimateTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 4);
}
