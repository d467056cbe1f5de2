/**
 * The bare baseline's shared parts: the queue (a durable quorum queue, like our task queue, so that
 * both pay for the same replication and fsync) and the table (the row a task needs, a primary key
 * and nothing else).
 */
import amqp from 'amqplib';
import pg from 'pg';

export const BARE_QUEUE = 'bare.tasks';
export const BARE_QUEUE_OPTIONS = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function prepareBare(databaseUrl: string, amqpUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`create schema if not exists bare`);
    await client.query(`drop table if exists bare.tasks`);
    await client.query(`
      create table bare.tasks (
        id uuid primary key,
        owner_id uuid not null,
        agent_id uuid not null,
        input text not null,
        status text not null,
        output text,
        attempts integer not null default 0,
        created_at timestamptz not null,
        started_at timestamptz,
        finished_at timestamptz,
        updated_at timestamptz not null
      )`);
  } finally {
    await client.end();
  }
  const connection = await amqp.connect(amqpUrl);
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue(BARE_QUEUE, BARE_QUEUE_OPTIONS);
    await channel.purgeQueue(BARE_QUEUE);
  } finally {
    await connection.close();
  }
}
