import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { isUuid } from '../../lib/ids.js';
import type { Consumer, MessageBroker } from '../../lib/messaging/types.js';
import { appendTaskMessages } from './messages.js';

/** The durable queue memory reads task outcomes from. */
export const TASK_OUTCOMES_QUEUE = 'memory.task-outcomes';

/** The part of the task service's `task.succeeded` event that memory uses. */
interface TaskSucceeded {
  taskId: string;
  ownerId: string;
  sessionId: string | null;
  input: string;
  output: string | null;
  completionTokens: number | null;
  createdAt: string;
  finishedAt: string;
}

/**
 * Appends a finished task's input and answer to its session when `task.succeeded` arrives. Exactly
 * once even when the event is delivered twice: the messages carry the task id under a unique
 * index. A session deleted meanwhile drops the event; a database error sends it back for retry.
 */
export async function consumeTaskOutcomes(orm: MikroORM, broker: MessageBroker, log: Logger): Promise<Consumer> {
  return broker.consumeEvents<TaskSucceeded>(
    TASK_OUTCOMES_QUEUE,
    ['task.succeeded'],
    async ({ body }) => {
      if (!body || !isUuid(body.taskId) || !isUuid(body.ownerId) || typeof body.input !== 'string') {
        log.warn({ body }, 'dropping a malformed task.succeeded event');
        return;
      }
      if (!body.sessionId || body.output === null) return;
      const result = await appendTaskMessages(orm.em.fork(), {
        ownerId: body.ownerId,
        sessionId: body.sessionId,
        taskId: body.taskId,
        input: body.input,
        output: body.output,
        outputTokens: body.completionTokens,
        inputAt: new Date(body.createdAt),
        outputAt: new Date(body.finishedAt),
      });
      if (!result.sessionFound) log.info({ taskId: body.taskId }, 'task.succeeded for a session that is gone; dropped');
    },
    { prefetch: 20 },
  );
}
