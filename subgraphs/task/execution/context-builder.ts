import { PRINCIPAL_HEADER } from '../../../lib/principal.js';
import { signPrincipalProof } from '../../../lib/principal.js';
import type { ChatMessage, CompletionRequest } from '../providers/types.js';
import type { TaskRow } from '../entities.js';

/** The answer's share of the context window when the agent sets no maxTokens. */
const DEFAULT_ANSWER_RESERVE = 4096;
/** Per-message framing the providers add around content (role markers), in estimated tokens. */
const FRAMING_TOKENS = 16;

export class ContextTooLargeError extends Error {
  override name = 'ContextTooLargeError';
}

export interface HistoryMessage {
  role: 'SYSTEM' | 'USER' | 'ASSISTANT' | 'TOOL';
  content: string;
  /** The count the memory service stored (the provider's own for an answer), when it has one. */
  tokenCount?: number | null;
}

/** Reads the session's recent history, newest kept first within a token budget. */
export type HistoryReader = (task: TaskRow, maxTokens: number) => Promise<HistoryMessage[]>;

/**
 * The memory service's own API, called on behalf of the task's owner: the worker signs a proof for
 * that user with `memory:read` only (it holds the shared INTERNAL_SECRET, as the router does).
 */
export function memoryHistoryReader(memoryUrl: string, internalSecret: string, timeoutMs = 10_000): HistoryReader {
  const query = `query ($r: [_Any!]!, $max: Int!, $task: ID) { _entities(representations: $r) {
    ... on Session { contextMessages(maxTokens: $max, excludeTaskId: $task) { role content tokenCount } } } }`;
  return async (task, maxTokens) => {
    if (!task.sessionId || maxTokens <= 0) return [];
    const proof = signPrincipalProof({ kind: 'user', userId: task.ownerId, scopes: ['memory:read'] }, internalSecret, `task-${task.id}`);
    const response = await fetch(`${memoryUrl}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [PRINCIPAL_HEADER]: proof },
      body: JSON.stringify({ query, variables: { r: [{ __typename: 'Session', id: task.sessionId }], max: maxTokens, task: task.id } }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await response.json().catch(() => null)) as {
      data?: { _entities?: ({ contextMessages: HistoryMessage[] } | null)[] };
      errors?: { message: string }[];
    } | null;
    if (!response.ok || !body?.data?._entities) {
      throw new Error(`memory service answered ${response.status}: ${body?.errors?.[0]?.message ?? 'no data'}`);
    }
    // A session deleted since the task was queued leaves the task without history, not failed.
    return body.data._entities[0]?.contextMessages ?? [];
  };
}

/**
 * The newest contiguous messages of `history` (oldest first) whose cost fits in `budget`: each
 * costs its estimated tokens (or the stored count, if larger) plus the per-message framing, as the
 * system prompt and the input are counted. The memory service cuts the history with its own counts
 * and no framing; counted again here, the request stays within the window whatever those were
 * (text outside the Latin script, or a long run of short messages).
 */
function fitHistory(history: HistoryMessage[], budget: number, estimateTokens: (text: string) => number): HistoryMessage[] {
  let used = 0;
  let start = history.length;
  while (start > 0) {
    const message = history[start - 1];
    // SYSTEM and TOOL messages are not sent (see buildRequest): they cost nothing.
    if (message.role === 'USER' || message.role === 'ASSISTANT') {
      const cost = Math.max(estimateTokens(message.content), message.tokenCount ?? 0) + FRAMING_TOKENS;
      if (used + cost > budget) break;
      used += cost;
    }
    start -= 1;
  }
  return history.slice(start);
}

/**
 * Builds the provider request: the system prompt (never dropped), the session's newest messages
 * that fit the model's context window after reserving room for the answer, then the input.
 * Consecutive messages of one role are merged and a leading assistant message dropped, since
 * Anthropic's API requires alternating turns that start with the user; SYSTEM and TOOL messages of
 * the history are not sent (the agent's system prompt is the one instruction).
 */
export async function buildRequest(
  task: TaskRow,
  readHistory: HistoryReader,
  sizing: { contextWindow: number; estimateTokens: (text: string) => number },
): Promise<CompletionRequest> {
  const reserve = task.maxTokens ?? Math.min(DEFAULT_ANSWER_RESERVE, Math.floor(sizing.contextWindow / 4));
  const fixed = sizing.estimateTokens(task.systemPrompt ?? '') + sizing.estimateTokens(task.input) + 2 * FRAMING_TOKENS;
  const historyBudget = sizing.contextWindow - reserve - fixed;
  if (historyBudget < 0) {
    throw new ContextTooLargeError(
      `The input and system prompt need about ${fixed} tokens, more than the ${sizing.contextWindow}-token context of ${task.model} leaves after ${reserve} for the answer.`,
    );
  }
  const history = fitHistory(await readHistory(task, historyBudget), historyBudget, sizing.estimateTokens);
  const messages: ChatMessage[] = [];
  for (const message of [...history, { role: 'USER' as const, content: task.input }]) {
    if (message.role !== 'USER' && message.role !== 'ASSISTANT') continue;
    const role = message.role === 'USER' ? 'user' : 'assistant';
    const last = messages.at(-1);
    if (last?.role === role) last.content += `\n\n${message.content}`;
    else if (role === 'assistant' && messages.length === 0) continue;
    else messages.push({ role, content: message.content });
  }
  return { model: task.model, systemPrompt: task.systemPrompt, messages, temperature: task.temperature, maxTokens: task.maxTokens };
}
