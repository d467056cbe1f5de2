import type { EntityManager } from '@mikro-orm/postgresql';
import { badInput } from '../../lib/errors.js';
import type { TaskEvent, TaskEventLog } from '../../lib/task-events/types.js';
import { TaskEventEntity, type TaskRow } from './entities.js';

/**
 * A task's events after `afterSequence`: from the live log while it has them, else (a finished task
 * whose log expired) from the archive in PostgreSQL that the outbox relay writes.
 */
export async function taskEvents(em: EntityManager, eventLog: TaskEventLog, task: TaskRow, afterSequence: number): Promise<TaskEvent[]> {
  if (!Number.isInteger(afterSequence) || afterSequence < 0) throw badInput('"afterSequence" must be 0 or more.', 'afterSequence');
  const live = await eventLog.read(task.id, afterSequence);
  if (live.length > 0 || task.status === 'QUEUED' || task.status === 'RUNNING') return live;
  const archived = await em.find(TaskEventEntity, { taskId: task.id, sequence: { $gt: afterSequence } }, { orderBy: { sequence: 'asc' } });
  return archived.map((row) => ({
    taskId: row.taskId,
    sequence: row.sequence,
    type: row.type as TaskEvent['type'],
    attempt: row.attempt,
    delta: row.delta,
    at: row.at.toISOString(),
  }));
}
