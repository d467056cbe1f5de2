import { describe, expect, it, vi } from 'vitest';
import { createInProcessBroker, topicMatches } from './in-process.js';

describe('topic matching', () => {
  it.each([
    ['task.*', 'task.succeeded', true],
    ['task.*', 'task.token.delta', false],
    ['task.*', 'task', false],
    ['task.#', 'task', true],
    ['task.#', 'task.token.delta', true],
    ['#', 'anything.at.all', true],
    ['#.failed', 'task.failed', true],
    ['a.#.z', 'a.z', true],
    ['a.#.z', 'a.b.c.z', true],
    ['a.#.z', 'a.b.c', false],
    ['*.succeeded', 'task.succeeded', true],
    ['task.succeeded', 'task.succeededx', false],
  ])('%s against %s → %s', (pattern, key, expected) => {
    expect(topicMatches(pattern, key)).toBe(expected);
  });
});

describe('in-process broker', () => {
  it('never runs a handler inside the publisher’s call stack, and counts a synchronous throw as a failure', async () => {
    const broker = createInProcessBroker();
    await broker.assertWorkQueue('sync', { maxDeliveries: 2 });
    let insidePublish = false;
    const counts: number[] = [];
    const calledInsidePublish: boolean[] = [];
    const handler = ({ deliveryCount }: { deliveryCount: number }): Promise<void> => {
      calledInsidePublish.push(insidePublish);
      counts.push(deliveryCount);
      throw new Error('synchronous');
    };
    await broker.consume('sync', handler);
    const dead: unknown[] = [];
    await broker.consume('sync.dead', async ({ body }) => void dead.push(body));
    insidePublish = true;
    const published = broker.sendToQueue('sync', 'x');
    insidePublish = false;
    await published;
    await vi.waitFor(() => expect(dead).toEqual(['x']));
    expect(counts).toEqual([1, 2]);
    expect(calledInsidePublish).toEqual([false, false]);
    await broker.close();
  });
});
