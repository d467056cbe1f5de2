/**
 * The baseline: the bare machinery the router's subscriptions are built on, and nothing else. A
 * plain graphql-ws server (`graphql-ws/use/ws`) whose `taskEvents` subscription reads the task's
 * Redis channel through graphql-redis-subscriptions' RedisPubSub (which parses each message's JSON
 * once); no authentication, no rate limits, no replay, no federation.
 *
 * Environment: PORT, REDIS_URL, EVENTS_PREFIX (the channel is `<prefix>task-events:<taskId>`, as
 * the event log publishes it).
 */
import { createServer } from 'node:http';
import { buildSchema } from 'graphql';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import { useServer } from 'graphql-ws/use/ws';
import { Redis } from 'ioredis';
import { WebSocketServer } from 'ws';
import { BARE_SCHEMA } from './workload.js';

const port = Number(process.env.PORT ?? 0);
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = process.env.EVENTS_PREFIX ?? 'ap:';

const pubsub = new RedisPubSub({ publisher: new Redis(redisUrl), subscriber: new Redis(redisUrl) });
const schema = buildSchema(BARE_SCHEMA);
const taskEvents = schema.getSubscriptionType()!.getFields().taskEvents;
taskEvents.subscribe = (_source, args: { taskId: string }) => pubsub.asyncIterator(`${prefix}task-events:${args.taskId}`);
taskEvents.resolve = (event: unknown) => event;

const server = createServer((req, res) => {
  res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'application/json' }).end('{}');
});
const wss = new WebSocketServer({ server, path: '/graphql' });
// Keep-alive pings every 30 s, as the router's default (WS_KEEP_ALIVE_MS), rather than graphql-ws's 12 s.
const disposable = useServer({ schema }, wss, 30_000);
server.listen(port, '127.0.0.1', () => console.log(`bare subscription server on ${port}`));

const stop = async () => {
  await disposable.dispose();
  server.close();
  await pubsub.close();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
