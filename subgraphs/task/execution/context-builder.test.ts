import { describe, expect, it } from 'vitest';
import type { TaskRow } from '../entities.js';
import { estimateTokens } from '../providers/models.js';
import type { CompletionRequest } from '../providers/types.js';
import { buildRequest, ContextTooLargeError, type HistoryMessage, type HistoryReader } from './context-builder.js';

/** What the builder counts around each message (role markers), as in context-builder.ts. */
const FRAMING_TOKENS = 16;

function task(fields: Partial<TaskRow> = {}): TaskRow {
  const now = new Date();
  return {
    id: '00000000-0000-4000-8000-000000000001',
    ownerId: '00000000-0000-4000-8000-000000000002',
    agentId: '00000000-0000-4000-8000-000000000003',
    sessionId: '00000000-0000-4000-8000-000000000004',
    input: 'What did we say?',
    status: 'RUNNING',
    provider: 'openai',
    model: 'small-model',
    systemPrompt: 'You are a careful assistant.',
    temperature: null,
    maxTokens: 512,
    agentSettings: {},
    output: null,
    error: null,
    attempts: 1,
    promptTokens: null,
    completionTokens: null,
    totalTokens: null,
    idempotencyKey: null,
    createdAt: now,
    startedAt: now,
    finishedAt: null,
    updatedAt: now,
    workerId: 'w',
    leaseExpiresAt: now,
    ...fields,
  };
}

/** One token per four code points: the memory service's own count, stored with each message. */
const memoryCount = (content: string) => Math.ceil([...content].length / 4);

/**
 * The memory service's `contextMessages`: the newest contiguous messages whose stored counts add up
 * to at most `maxTokens`, oldest first. It records the budget it was asked for.
 */
function memory(history: HistoryMessage[]): { reader: HistoryReader; asked: number[] } {
  const asked: number[] = [];
  const stored = history.map((message) => ({ ...message, tokenCount: message.tokenCount ?? memoryCount(message.content) }));
  const reader: HistoryReader = async (_task, maxTokens) => {
    asked.push(maxTokens);
    let used = 0;
    let start = stored.length;
    while (start > 0 && used + stored[start - 1].tokenCount <= maxTokens) used += stored[--start].tokenCount;
    return stored.slice(start);
  };
  return { reader, asked };
}

/** Alternating user and assistant turns. */
const turns = (count: number, content: (i: number) => string): HistoryMessage[] =>
  Array.from({ length: count }, (_, i) => ({ role: i % 2 === 0 ? 'USER' : 'ASSISTANT', content: content(i) }));

/** The request's size as the builder counts it: the system prompt and every message with its framing. */
const requestTokens = (request: CompletionRequest) =>
  estimateTokens(request.systemPrompt ?? '') + FRAMING_TOKENS + request.messages.reduce((n, m) => n + estimateTokens(m.content) + FRAMING_TOKENS, 0);

const sizing = (contextWindow: number) => ({ contextWindow, estimateTokens });

describe('buildRequest', () => {
  it('sends the system prompt, then the newest history that fits, oldest first, then the input', async () => {
    const history = turns(6, (i) => `message ${i}`);
    const { reader, asked } = memory(history);
    const request = await buildRequest(task(), reader, sizing(8192));
    expect(request.systemPrompt).toBe('You are a careful assistant.');
    expect(request.messages).toEqual([
      ...history.map((m) => ({ role: m.role === 'USER' ? 'user' : 'assistant', content: m.content })),
      { role: 'user', content: 'What did we say?' },
    ]);
    // The budget asked of memory leaves room for the answer, the system prompt and the input.
    expect(asked).toEqual([8192 - 512 - estimateTokens('You are a careful assistant.') - estimateTokens('What did we say?') - 2 * FRAMING_TOKENS]);
  });

  it('keeps the newest messages and drops the oldest when the history is longer than the window allows', async () => {
    const history = turns(400, (i) => `turn number ${i} of a long conversation about many things`);
    const request = await buildRequest(task(), memory(history).reader, sizing(4096));
    const sent = request.messages.slice(0, -1).map((m) => m.content);
    expect(sent.length).toBeGreaterThan(10);
    expect(sent.length).toBeLessThan(400);
    // A contiguous tail: the newest message is there, and no hole before it.
    expect(sent).toEqual(history.slice(-sent.length).map((m) => m.content));
    expect(requestTokens(request)).toBeLessThanOrEqual(4096 - 512);
  });

  it('stays within the window when the memory service counted the history lower than the builder does', async () => {
    // Text outside the Latin script: three UTF-8 bytes per character, counted by memory as a quarter token each.
    const cjk = turns(300, (i) => `${'記憶'.repeat(20)}${i}`);
    const fromCjk = await buildRequest(task(), memory(cjk).reader, sizing(4096));
    expect(fromCjk.systemPrompt).toBe('You are a careful assistant.');
    expect(fromCjk.messages.at(-1)).toEqual({ role: 'user', content: 'What did we say?' });
    expect(fromCjk.messages.length).toBeGreaterThan(2);
    expect(requestTokens(fromCjk)).toBeLessThanOrEqual(4096 - 512);

    // A long run of short messages: each costs its framing too.
    const short = turns(2000, (i) => (i % 2 === 0 ? 'ok' : 'yes'));
    const fromShort = await buildRequest(task(), memory(short).reader, sizing(4096));
    expect(fromShort.messages.length).toBeGreaterThan(2);
    expect(requestTokens(fromShort)).toBeLessThanOrEqual(4096 - 512);
  });

  it("cuts the history itself, counting an answer at the provider's stored count when that is higher than the estimate", async () => {
    const history: HistoryMessage[] = [
      { role: 'USER', content: 'first question' },
      { role: 'ASSISTANT', content: 'a short answer', tokenCount: 3600 },
      { role: 'USER', content: 'second question' },
      { role: 'ASSISTANT', content: 'another answer' },
    ];
    // A reader that hands back more than it was asked for.
    const request = await buildRequest(task(), async () => history, sizing(4096));
    // The answer said to cost 3600 tokens does not fit beside the newer turns; nothing older than it is sent either.
    expect(request.messages.map((m) => m.content)).toEqual(['second question', 'another answer', 'What did we say?']);
  });

  it('never drops the system prompt: a prompt and input that leave no room fail the task with the reason', async () => {
    const huge = task({ systemPrompt: 'rule '.repeat(4000), maxTokens: null });
    await expect(buildRequest(huge, memory(turns(4, String)).reader, sizing(4096))).rejects.toThrow(ContextTooLargeError);
    await expect(buildRequest(huge, memory([]).reader, sizing(4096))).rejects.toThrow(/4096-token context of small-model/);
    // With room for the prompt and the input but none for history, the prompt and the input are sent alone.
    const tight = task({ systemPrompt: 'rule '.repeat(700), maxTokens: 512 });
    const request = await buildRequest(tight, memory(turns(10, (i) => `old ${i} ${'x'.repeat(400)}`)).reader, sizing(4096));
    expect(request.systemPrompt).toBe('rule '.repeat(700));
    expect(request.messages.at(-1)).toEqual({ role: 'user', content: 'What did we say?' });
    expect(requestTokens(request)).toBeLessThanOrEqual(4096 - 512);
  });
});
