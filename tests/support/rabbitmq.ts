import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The RabbitMQ tests use, without a vhost: TEST_AMQP_URL, or the machine's local one. */
export const TEST_AMQP_URL = process.env.TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const USER = decodeURIComponent(new URL(TEST_AMQP_URL).username || 'guest');

/** Runs `rabbitmqctl` on this machine (each call starts an Erlang VM: about a second). */
export function rabbitmqctl(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('rabbitmqctl', args, { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${stderr || error.message}`, { cause: error }));
      else resolve(stdout);
    });
  });
}

export interface TestVhost {
  name: string;
  /** `amqp://guest:guest@127.0.0.1:5672/<name>` */
  url: string;
  /** Deletes the vhost (and every queue in it), then lets a broker restart go ahead. */
  drop: () => Promise<void>;
}

export interface TestVhostOptions {
  /**
   * The test file stops and starts RabbitMQ (every vhost with it): it waits until no other test file
   * holds a vhost, and others wait for it. @default false
   */
  restartsBroker?: boolean;
}

/**
 * A fresh vhost with a random name for one test file, with all permissions for the test user.
 * Test files run in parallel and one of them restarts RabbitMQ: holding a vhost takes a shared
 * lock (a file under the OS temp directory) and that test takes it exclusively, so it never pulls
 * the broker from under another file.
 */
export async function createTestVhost(label: string, options: TestVhostOptions = {}): Promise<TestVhost> {
  const name = `t_${label.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 20)}_${randomBytes(4).toString('hex')}`;
  const release = options.restartsBroker ? await lockExclusive() : await lockShared();
  try {
    await rabbitmqctl('add_vhost', name);
    await rabbitmqctl('set_permissions', '-p', name, USER, '.*', '.*', '.*');
  } catch (error) {
    await release();
    throw error;
  }
  const url = new URL(TEST_AMQP_URL);
  url.pathname = `/${encodeURIComponent(name)}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    drop: async () => {
      if (dropped) return;
      dropped = true;
      try {
        await rabbitmqctl('delete_vhost', name);
      } finally {
        await release();
      }
    },
  };
}

/** Starts the RabbitMQ application if it is stopped and waits until it serves clients. */
export async function ensureRabbitMqRunning(): Promise<void> {
  await rabbitmqctl('start_app');
  await rabbitmqctl('await_startup');
}

// ---- A readers-writer lock across test processes ----
//
// Readers (files holding a vhost) each own a file `shared-<pid>-<random>`. The writer (the restart
// test) creates the directory `exclusive` (pending), waits until no reader is left, then marks it
// `active` and waits again for readers that slipped in. A reader writes its file before checking
// for `active`, so either it sees the mark or the writer sees its file. While the writer is only
// pending, new readers wait a little for it and then go ahead, so that a long end-to-end file does
// not make every other file wait.

const LOCK_DIR = join(tmpdir(), 'agent-platform-rabbitmq-lock');
const EXCLUSIVE = join(LOCK_DIR, 'exclusive');
const ACTIVE = join(EXCLUSIVE, 'active');
const POLL_MS = 200;
/** How long a reader defers to a pending writer before going ahead anyway. */
const COURTESY_MS = 20_000;

async function lockShared(timeoutMs = 50_000): Promise<() => Promise<void>> {
  await mkdir(LOCK_DIR, { recursive: true });
  const mine = join(LOCK_DIR, `shared-${process.pid}-${randomBytes(4).toString('hex')}`);
  const start = Date.now();
  for (;;) {
    const writer = await writerState();
    if (writer === 'none' || (writer === 'pending' && Date.now() - start > COURTESY_MS)) {
      await writeFile(mine, '');
      if ((await writerState()) !== 'active') return () => rm(mine, { force: true });
      await rm(mine, { force: true });
    }
    if (Date.now() - start > timeoutMs) throw new Error(`A RabbitMQ restart test held ${EXCLUSIVE} for more than ${timeoutMs} ms.`);
    await sleep(POLL_MS);
  }
}

async function lockExclusive(timeoutMs = 600_000): Promise<() => Promise<void>> {
  await mkdir(LOCK_DIR, { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await mkdir(EXCLUSIVE);
      await writeFile(join(EXCLUSIVE, 'pid'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if (await exclusiveStale()) await rm(EXCLUSIVE, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`Another RabbitMQ restart test held ${EXCLUSIVE} for more than ${timeoutMs} ms.`);
      else await sleep(POLL_MS);
    }
  }
  const release = () => rm(EXCLUSIVE, { recursive: true, force: true });
  try {
    await readersGone(deadline);
    await writeFile(ACTIVE, '');
    await readersGone(deadline);
  } catch (error) {
    await release();
    throw error;
  }
  return release;
}

async function readersGone(deadline: number): Promise<void> {
  for (;;) {
    let alive = 0;
    for (const entry of await readdir(LOCK_DIR)) {
      if (!entry.startsWith('shared-')) continue;
      // A dead process's leftover does not count.
      if (processAlive(Number(entry.split('-')[1]))) alive++;
      else await rm(join(LOCK_DIR, entry), { force: true });
    }
    if (alive === 0) return;
    if (Date.now() > deadline) throw new Error('Other test files held RabbitMQ vhosts for too long; the restart test did not run.');
    await sleep(POLL_MS);
  }
}

async function writerState(): Promise<'none' | 'pending' | 'active'> {
  try {
    await stat(EXCLUSIVE);
  } catch {
    return 'none';
  }
  if (await exclusiveStale()) {
    await rm(EXCLUSIVE, { recursive: true, force: true });
    return 'none';
  }
  try {
    await stat(ACTIVE);
    return 'active';
  } catch {
    return 'pending';
  }
}

/** The exclusive lock of a process that died without releasing it. */
async function exclusiveStale(): Promise<boolean> {
  try {
    const pid = Number(await readFile(join(EXCLUSIVE, 'pid'), 'utf8'));
    return pid > 0 && !processAlive(pid);
  } catch {
    // No pid yet: either just created (fresh) or its owner died between mkdir and writing.
    try {
      return Date.now() - (await stat(EXCLUSIVE)).mtimeMs > 60_000;
    } catch {
      return false;
    }
  }
}

function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
