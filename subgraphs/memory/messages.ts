import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { badInput, notFound } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { pageSize, type Connection } from '../../lib/pagination.js';
import { MessageEntity, type MessageRole, type MessageRow, type SessionRow } from './entities.js';

/** The longest message content accepted through the API, in characters. */
export const MAX_CONTENT_LENGTH = 200_000;

/**
 * A model-independent token estimate: one token per four characters (Unicode code points),
 * rounded up. That is the usual rule of thumb for BPE tokenizers on English text; it errs high
 * for code and low for CJK text. It is only used to budget context windows, never for billing:
 * where a provider reports a real count (a task's answer), that count is stored instead.
 */
export function estimateTokens(content: string): number {
  let codePoints = 0;
  for (const _ of content) codePoints++;
  return Math.ceil(codePoints / 4);
}

const CURSOR_PREFIX = 'm1:';
const MAX_POSITION = 2n ** 63n - 1n;

/** Opaque keyset cursor over a session's messages: base64url of "m1:<position>". */
export function encodeMessageCursor(position: bigint): string {
  return Buffer.from(`${CURSOR_PREFIX}${position}`, 'utf8').toString('base64url');
}

/** The position after which a page starts; BAD_USER_INPUT for anything this API did not hand out. */
export function decodeMessageCursor(cursor: string): bigint {
  const match = /^m1:(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  const position = match ? BigInt(match[1]) : -1n;
  // Re-encoding must give the same text: Buffer ignores stray characters, we do not.
  if (position < 1n || position > MAX_POSITION || encodeMessageCursor(position) !== cursor) {
    throw badInput('The "after" cursor is not one this API returned.', 'after');
  }
  return position;
}

/** A page of the session's messages, oldest first. The caller has already authorised `session`. */
export async function listMessages(
  em: EntityManager,
  session: Pick<SessionRow, 'id'>,
  args: { first?: number | null; after?: string | null },
): Promise<Connection<MessageRow>> {
  const first = pageSize(args.first, 50);
  const after = args.after ? { position: { $gt: decodeMessageCursor(args.after) } } : {};
  const where = { sessionId: session.id };
  const [rows, totalCount] = await Promise.all([
    em.find(MessageEntity, { ...where, ...after }, { orderBy: { position: 'asc' }, limit: first + 1 }),
    em.count(MessageEntity, where),
  ]);
  const edges = rows.slice(0, first).map((node) => ({ cursor: encodeMessageCursor(node.position), node }));
  return {
    edges,
    pageInfo: { hasNextPage: rows.length > first, endCursor: edges.at(-1)?.cursor ?? null },
    totalCount,
  };
}

/**
 * The newest messages of the session whose token counts fit in `maxTokens`, oldest first: a
 * running sum from the newest message backwards keeps a contiguous tail, so the first message that
 * does not fit ends the context (a conversation with a hole in it would mislead the model).
 */
export async function contextMessages(
  em: EntityManager,
  session: Pick<SessionRow, 'id'>,
  maxTokens: number,
  excludeTaskId?: string | null,
): Promise<MessageRow[]> {
  if (!Number.isInteger(maxTokens) || maxTokens < 0 || maxTokens > 10_000_000) {
    throw badInput('"maxTokens" must be between 0 and 10,000,000.', 'maxTokens');
  }
  if (maxTokens === 0) return [];
  const exclude = excludeTaskId && isUuid(excludeTaskId) ? excludeTaskId : null;
  const rows = await em.execute(
    `select ${MESSAGE_COLUMNS}, position from (
       select m.*, sum(coalesce(m.token_count, 0)) over (order by m.position desc) as running
       from ${MESSAGES} m
       where m.session_id = ? and (?::uuid is null or m.task_id is distinct from ?::uuid)
     ) recent
     where running <= ?
     order by position asc`,
    [session.id, exclude, exclude, maxTokens],
  );
  return rows.map((row) => em.map(MessageEntity, row));
}

function checkContent(content: string): string {
  if (content.trim().length === 0) throw badInput('"content" must not be empty.', 'content');
  if (content.length > MAX_CONTENT_LENGTH) {
    throw badInput(`"content" must be at most ${MAX_CONTENT_LENGTH.toLocaleString('en')} characters.`, 'content');
  }
  if (content.includes('\u0000')) throw badInput('"content" must not contain NUL characters.', 'content');
  // Stored as sent: leading spaces and blank lines matter in code and quoted text.
  return content;
}

const MESSAGES = '"memory"."messages"';
const SESSIONS = '"memory"."sessions"';
const MESSAGE_COLUMNS = 'id, session_id, owner_id, role, content, token_count, task_id, created_at';

/**
 * Adds a message at the end of one of the owner's sessions and moves the session's updatedAt.
 * One statement: the update locks the session row before the insert draws its position, so
 * positions follow commit order within a session.
 */
export async function appendMessage(
  em: EntityManager,
  ownerId: string,
  input: { sessionId: string; role: MessageRole; content: string },
): Promise<MessageRow> {
  const content = checkContent(input.content);
  if (!isUuid(input.sessionId)) throw notFound('Session');
  const now = new Date();
  const rows = await em.execute(
    `with session as (
       update ${SESSIONS} set updated_at = greatest(updated_at, ?) where id = ? and owner_id = ? returning id, owner_id
     )
     insert into ${MESSAGES} (${MESSAGE_COLUMNS})
     select ?, session.id, session.owner_id, ?, ?, ?, null, ? from session
     returning *`,
    [now, input.sessionId, ownerId, randomUUID(), input.role, content, estimateTokens(content), now],
  );
  if (rows.length === 0) throw notFound('Session');
  return em.map(MessageEntity, rows[0]);
}

export interface TaskMessages {
  ownerId: string;
  sessionId: string;
  taskId: string;
  /** The task's input, stored as a USER message. */
  input: string;
  /** The task's answer, stored as an ASSISTANT message. */
  output: string;
  /** The provider's count for the input, when known. @default estimateTokens(input) */
  inputTokens?: number | null;
  /** The provider's count for the answer (its completion tokens), when known. @default estimateTokens(output) */
  outputTokens?: number | null;
  /** When the task was submitted. @default now */
  inputAt?: Date;
  /** When the task finished. @default now */
  outputAt?: Date;
}

export interface TaskMessagesResult {
  /** False when the session is gone or not the owner's: nothing was written, nothing to retry. */
  sessionFound: boolean;
  /** 2 the first time, 0 when the event is delivered again. */
  inserted: number;
}

/** PostgreSQL cannot store NUL in text; a model's answer is kept, with NUL shown as U+FFFD. */
const storable = (text: string) => text.replaceAll('\u0000', '\uFFFD');

/**
 * Appends a finished task's input (USER) and answer (ASSISTANT) to its session exactly once,
 * in one transaction: a redelivered event meets the unique (session_id, task_id, role) index
 * and inserts nothing. The session's updatedAt moves only when something was inserted.
 */
export async function appendTaskMessages(em: EntityManager, task: TaskMessages): Promise<TaskMessagesResult> {
  if (!isUuid(task.taskId)) throw new TypeError(`appendTaskMessages: taskId must be a UUID, got ${JSON.stringify(task.taskId)}.`);
  if (!isUuid(task.sessionId) || !isUuid(task.ownerId)) return { sessionFound: false, inserted: 0 };
  const now = new Date();
  return em.transactional(async (tx) => {
    // Locks the session so positions follow commit order and a concurrent delete waits.
    const session = await tx.execute(`select id from ${SESSIONS} where id = ? and owner_id = ? for update`, [task.sessionId, task.ownerId]);
    if (session.length === 0) return { sessionFound: false, inserted: 0 };
    const messages: [MessageRole, string, number | null | undefined, Date | undefined][] = [
      ['USER', storable(task.input), task.inputTokens, task.inputAt],
      ['ASSISTANT', storable(task.output), task.outputTokens, task.outputAt],
    ];
    let inserted = 0;
    // One statement per message, in order, so the input's position precedes the answer's.
    for (const [role, content, tokens, at] of messages) {
      const rows = await tx.execute(
        `insert into ${MESSAGES} (${MESSAGE_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?)
         on conflict (session_id, task_id, role) where task_id is not null do nothing
         returning id`,
        [randomUUID(), task.sessionId, task.ownerId, role, content, tokens ?? estimateTokens(content), task.taskId, at ?? now],
      );
      inserted += rows.length;
    }
    if (inserted > 0) {
      await tx.execute(`update ${SESSIONS} set updated_at = greatest(updated_at, ?) where id = ?`, [now, task.sessionId]);
    }
    return { sessionFound: true, inserted };
  });
}
