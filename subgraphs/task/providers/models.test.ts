import { describe, expect, it } from 'vitest';
import { contextWindow, contextWindowsFromEnv, DEFAULT_CONTEXT_WINDOW, estimateTokens } from './models.js';

describe('context windows', () => {
  it('knows the well-known models', () => {
    const cases: Array<[string, string, number]> = [
      ['openai', 'gpt-4o', 128_000],
      ['openai', 'gpt-4o-mini-2024-07-18', 128_000],
      ['openai', 'gpt-4.1-nano', 1_047_576],
      ['openai', 'gpt-4', 8_192],
      ['openai', 'gpt-3.5-turbo', 16_385],
      ['openai', 'o1-mini', 128_000],
      ['openai', 'o3-mini', 200_000],
      ['anthropic', 'claude-3-5-haiku-latest', 200_000],
      ['anthropic', 'claude-sonnet-4-6', 200_000],
      ['anthropic', 'claude-opus-4-1-20250805', 200_000],
      ['openai', 'llama3:8b', 8_192],
      ['openai', 'llama3.1:70b', 131_072],
      ['openai', 'meta-llama/Llama-3.3-70B-Instruct', 131_072],
      ['openai', 'mistral:7b', 32_768],
      ['openai', 'mistral-nemo', 131_072],
      ['openai', 'qwen2.5:14b', 32_768],
    ];
    for (const [provider, model, tokens] of cases) expect([model, contextWindow(provider, model)]).toEqual([model, tokens]);
  });

  it('falls back to a safe default, and to 200k for an unknown Claude', () => {
    expect(contextWindow('openai', 'my-finetune')).toBe(DEFAULT_CONTEXT_WINDOW);
    expect(contextWindow('echo', 'echo')).toBe(8_192);
    expect(contextWindow('anthropic', 'some-future-model')).toBe(200_000);
  });

  it('lets MODEL_CONTEXT_WINDOWS override by exact name or by prefix*', () => {
    const overrides = contextWindowsFromEnv({ MODEL_CONTEXT_WINDOWS: '{"llama3.1:8b": 4096, "my-*": 32768, "my-big-*": 65536}' });
    expect(contextWindow('openai', 'llama3.1:8b', overrides)).toBe(4_096);
    expect(contextWindow('openai', 'llama3.1:70b', overrides)).toBe(131_072);
    expect(contextWindow('openai', 'my-small', overrides)).toBe(32_768);
    expect(contextWindow('openai', 'my-big-one', overrides)).toBe(65_536);
  });

  it('refuses an override that is not a JSON object of positive integers', () => {
    expect(contextWindowsFromEnv({})).toEqual({});
    for (const bad of ['[1]', '{"m": 0}', '{"m": "8k"}', '{"m": 1.5}', 'eight']) {
      expect(() => contextWindowsFromEnv({ MODEL_CONTEXT_WINDOWS: bad })).toThrow(/^MODEL_CONTEXT_WINDOWS must be a JSON object/);
    }
  });
});

describe('estimateTokens', () => {
  it('counts UTF-8 bytes / 4, rounded up', () => {
    expect(estimateTokens('')).toBe(0);
    expect(estimateTokens('abcd')).toBe(1);
    expect(estimateTokens('abcde')).toBe(2);
    expect(estimateTokens('The quick brown fox jumps over the lazy dog.')).toBe(11);
    // Three bytes per character: non-Latin text weighs more per character, as it does for tokenizers.
    expect(estimateTokens('日本語のテキスト')).toBe(6);
  });
});
