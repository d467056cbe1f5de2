import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { freePort, ROOT } from '../../tests/support/processes.js';
import { reasonOf } from './run-service.js';

interface LogLine {
  level?: number;
  service?: string;
  msg?: string;
  err?: { message?: string; code?: string };
}

/** Runs a service's main until it exits on its own; kills it after `timeoutMs` so the test fails rather than hangs. */
async function runToExit(entry: string, env: Record<string, string>, timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function logLines(stdout: string): LogLine[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

describe('runService', () => {
  it('exits with status 1 and one fatal log line when the service cannot start (an unreachable database)', async () => {
    const { code, stdout, stderr } = await runToExit('subgraphs/agent/main.ts', {
      // Nothing listens on port 1: the connect is refused at once (openServiceDatabase does not retry).
      DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
      INTERNAL_SECRET: 'x'.repeat(32),
      AGENT_PORT: String(await freePort()),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
    });
    const output = `${stdout}\n${stderr}`;
    expect({ code, output }).toMatchObject({ code: 1 });
    // Not Node's crash report for an unhandled rejection.
    expect(output).not.toContain('triggerUncaughtException');
    expect(output).not.toMatch(/Node\.js v\d/);
    expect(stderr.trim()).toBe('');

    const fatal = logLines(stdout).filter((line) => line.level === 60);
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatchObject({ service: 'agent', err: { code: 'ECONNREFUSED' } });
    expect(fatal[0].msg).toMatch(/^agent could not start: .*ECONNREFUSED/);
  }, 30_000);

  it('still exits with status 2 and the sentence for a bad configuration', async () => {
    const { code, stdout, stderr } = await runToExit('subgraphs/agent/main.ts', {
      DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
      INTERNAL_SECRET: 'too short',
    });
    expect({ code, stderr }).toEqual({ code: 2, stderr: '' });
    expect(logLines(stdout).filter((line) => line.level === 60).map((line) => line.msg)).toEqual(['INTERNAL_SECRET must be at least 32 characters long.']);
  }, 30_000);
});

describe('reasonOf', () => {
  it('says why in one line, whatever was thrown', () => {
    expect(reasonOf(new Error('connect ECONNREFUSED 127.0.0.1:1'))).toBe('connect ECONNREFUSED 127.0.0.1:1');
    const refused = (address: string) => Object.assign(new Error(`connect ECONNREFUSED ${address}`), { code: 'ECONNREFUSED' });
    expect(reasonOf(new AggregateError([refused('::1:1'), refused('127.0.0.1:1')]))).toBe('connect ECONNREFUSED ::1:1; connect ECONNREFUSED 127.0.0.1:1');
    expect(reasonOf(Object.assign(new Error(''), { code: 'ECONNRESET' }))).toBe('ECONNRESET');
    expect(reasonOf('plain text')).toBe('plain text');
  });
});
