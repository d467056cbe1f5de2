import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config.js';
import { standaloneWorkerConfigFromEnv, taskWorkerConfigFromEnv } from './worker-service.js';

const ENV = {
  // Nothing listens there: a worker that got past its configuration would fail later, not with status 2.
  DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
  INTERNAL_SECRET: 'x'.repeat(32),
  AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672',
  REDIS_URL: 'redis://127.0.0.1:6379',
};

function without(name: keyof typeof ENV): Record<string, string> {
  const env: Record<string, string> = { ...ENV };
  delete env[name];
  return env;
}

describe('a task worker in its own process', () => {
  it('needs AMQP_URL and REDIS_URL, which it shares with the task service and the routers', () => {
    expect(standaloneWorkerConfigFromEnv(ENV)).toMatchObject({ amqpUrl: ENV.AMQP_URL, redisUrl: ENV.REDIS_URL });
    expect(() => standaloneWorkerConfigFromEnv(without('AMQP_URL'))).toThrow(ConfigError);
    expect(() => standaloneWorkerConfigFromEnv(without('AMQP_URL'))).toThrow(/^AMQP_URL must be set/);
    expect(() => standaloneWorkerConfigFromEnv(without('REDIS_URL'))).toThrow(/^REDIS_URL must be set/);
    // The worker `npm start` runs in its own process uses the in-process queue and event log.
    expect(taskWorkerConfigFromEnv(without('AMQP_URL'))).toMatchObject({ amqpUrl: undefined });
  });

  it('exits with status 2 and one sentence when started without them, instead of waiting on a queue nobody feeds', async () => {
    for (const missing of ['AMQP_URL', 'REDIS_URL'] as const) {
      const child = spawn(process.execPath, ['--import', 'tsx', new URL('./worker-main.ts', import.meta.url).pathname], {
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', WORKER_HEALTH_PORT: '-1', ...without(missing) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const [code] = await once(child, 'exit');
      clearTimeout(timer);
      expect({ missing, code }).toEqual({ missing, code: 2 });
      expect(output).toContain(`${missing} must be set`);
    }
  }, 60_000);
});
