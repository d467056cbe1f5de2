/**
 * The bare machinery's worker, as the benchmark issue defines it, with nothing of ours: per
 * message (manual ack, prefetch 100) one UPDATE to RUNNING, ten Redis PUBLISHes (nine before the
 * final UPDATE — STARTED and the tokens —, the tenth, SUCCEEDED, after it, as our final event
 * follows the commit), an UPDATE to SUCCEEDED, the ack. ioredis pipelines automatically
 * (`enableAutoPipelining`), as the issue asks for the fair baseline.
 */
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import pg from 'pg';
import { BARE_QUEUE, BARE_QUEUE_OPTIONS } from './bare.js';

interface BareWorkerConfig {
  databaseUrl: string;
  amqpUrl: string;
  redisUrl: string;
  channelPrefix: string;
  prefetch: number;
  poolMax: number;
}

const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}') as BareWorkerConfig;
const pool = new pg.Pool({ connectionString: config.databaseUrl, max: config.poolMax });
const redis = new Redis(config.redisUrl, { enableAutoPipelining: true });
const connection = await amqp.connect(config.amqpUrl);
const channel = await connection.createChannel();
await channel.assertQueue(BARE_QUEUE, BARE_QUEUE_OPTIONS);
await channel.prefetch(config.prefetch);

const TOKENS = ['Echo: ', 'the ', 'quick ', 'brown ', 'fox ', 'jumps ', 'over ', 'it'];

await channel.consume(BARE_QUEUE, (message) => {
  if (!message) return;
  void (async () => {
    const { id } = JSON.parse(message.content.toString()) as { id: string };
    const topic = `${config.channelPrefix}${id}`;
    await pool.query(`update bare.tasks set status = 'RUNNING', attempts = attempts + 1, started_at = now(), updated_at = now() where id = $1`, [id]);
    let sequence = 1;
    const event = (type: string, delta: string | null) =>
      JSON.stringify({ taskId: id, sequence: ++sequence, type, attempt: 1, delta, at: new Date().toISOString() });
    await redis.publish(topic, event('STARTED', null));
    for (const token of TOKENS) await redis.publish(topic, event('TOKEN', token));
    await pool.query(`update bare.tasks set status = 'SUCCEEDED', output = $2, finished_at = now(), updated_at = now() where id = $1`, [id, TOKENS.join('')]);
    await redis.publish(topic, event('SUCCEEDED', null));
    channel.ack(message);
  })().catch((error: unknown) => {
    console.error('bare worker failed', error);
    channel.nack(message, false, true);
  });
});
console.error('bare worker ready');

const stop = async () => {
  await connection.close().catch(() => undefined);
  await pool.end();
  redis.disconnect();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
