/**
 * Our own supergraph for the gateway benchmark: the four real subgraphs (auth, agent, memory,
 * task) as separate processes on a fresh database, composed at their ports, and a user with
 * agents, sessions, messages and tasks to read.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';
import YAML from 'yaml';
import { SUBGRAPHS, type SubgraphName } from '../../../lib/config.js';
import { createTestDatabase } from '../../../tests/support/database.js';
import { ROOT, freePort, nodeCommand, spawnProcess, waitForHealthy, type BenchChild } from '../../support/processes.js';

const NAMES: readonly SubgraphName[] = ['auth', 'agent', 'memory', 'task'];

export interface OwnSubgraphs {
  /** Base URL of each subgraph. */
  urls: Record<SubgraphName, string>;
  /** The supergraph composed from supergraph.yaml's schema files, routed to these processes. */
  supergraphSdl: string;
  /** `AGENT_URL`... for the router. */
  routerEnv: Record<string, string>;
  internalSecret: string;
  processes: BenchChild[];
  /** Resolves once every subgraph answers /readyz (rejects if one does not). */
  ready: Promise<void>;
  stop(): Promise<void>;
}

/** A dashboard: the caller, their agents with owner (auth), sessions with messages (memory) and tasks (task). */
export const OWN_QUERY = `query Dashboard {
  me { id email name }
  agents(first: 10) {
    totalCount
    edges {
      node {
        id
        name
        provider
        model
        status
        owner { id email name }
        sessions(first: 5) {
          totalCount
          edges { node { id title messages(first: 5) { edges { node { id role content } } } } }
        }
        tasks(first: 5) {
          totalCount
          edges { node { id status input session { id title } } }
        }
      }
    }
  }
}`;

function composeOwn(urls: Record<SubgraphName, string>): string {
  const config = YAML.parse(readFileSync(resolve(ROOT, 'supergraph.yaml'), 'utf8')) as { subgraphs: Record<string, { schema: { file: string } }> };
  const result = composeServices(
    Object.entries(config.subgraphs).map(([name, spec]) => ({
      name,
      url: `${urls[name as SubgraphName]}/graphql`,
      typeDefs: parse(readFileSync(resolve(ROOT, spec.schema.file), 'utf8')),
    })),
  );
  if (result.errors) throw new Error(`Our subgraphs do not compose:\n${result.errors.map((e) => `- ${e.message}`).join('\n')}`);
  return result.supergraphSdl;
}

/**
 * Starts the four subgraphs on a fresh database, pinned to `cpus`, and returns at once with the
 * supergraph routed to them (`ready` tells when they answer); `stop()` also drops the database.
 */
export async function startOwnSubgraphs(jwt: { privateKey: string; publicKey: string }, cpus: string | undefined): Promise<OwnSubgraphs> {
  const db = await createTestDatabase('bench_gateway');
  const internalSecret = randomBytes(32).toString('hex');
  const processes: BenchChild[] = [];
  const stop = async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await db.drop();
  };
  try {
    const urls = {} as Record<SubgraphName, string>;
    const env: Record<string, string> = {
      NODE_ENV: 'production',
      DATABASE_URL: db.url,
      INTERNAL_SECRET: internalSecret,
      JWT_PRIVATE_KEY: jwt.privateKey,
      JWT_PUBLIC_KEY: jwt.publicKey,
      // The load must last longer than the default access token.
      ACCESS_TOKEN_TTL_SECONDS: '3600',
      // Subgraphs are the environment here, not what is measured: no request log.
      LOG_LEVEL: 'warn',
    };
    for (const name of NAMES) {
      const port = await freePort();
      urls[name] = `http://127.0.0.1:${port}`;
      env[SUBGRAPHS[name].portVar] = String(port);
      env[SUBGRAPHS[name].urlVar] = urls[name];
    }
    const supergraphSdl = composeOwn(urls);
    // Each applies its own migrations to the shared database at start, as under Compose.
    const ready = Promise.all(
      NAMES.map((name) => {
        const service = spawnProcess(`${name} subgraph`, nodeCommand(`subgraphs/${name}/main.ts`), { cpus, env });
        processes.push(service);
        return waitForHealthy(`${urls[name]}/readyz`, service);
      }),
    ).then(() => undefined);
    // Whoever awaits it sees the failure; this keeps it from being an unhandled rejection meanwhile.
    ready.catch(() => undefined);
    const routerEnv = Object.fromEntries(NAMES.map((name) => [SUBGRAPHS[name].urlVar, urls[name]]));
    return { urls, supergraphSdl, routerEnv, internalSecret, processes, ready, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function graphql<T>(url: string, query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await response.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors || !body.data) throw new Error(`Seeding failed: ${JSON.stringify(body.errors ?? body).slice(0, 300)}`);
  return body.data;
}

export interface Seeded {
  userId: string;
  accessToken: string;
  agents: number;
  sessions: number;
  messages: number;
  tasks: number;
}

/** Seeds through a router: one user, 3 agents, 2 sessions of 3 messages and 2 tasks per agent. */
export async function seed(routerUrl: string): Promise<Seeded> {
  const signUp = await graphql<{ signUp: { accessToken: string; user: { id: string } } }>(
    routerUrl,
    'mutation($email: String!, $password: String!) { signUp(email: $email, password: $password, name: "Bench User") { accessToken user { id } } }',
    { email: `bench-${randomBytes(4).toString('hex')}@example.com`, password: 'benchmark-password' },
  );
  const token = signUp.signUp.accessToken;
  const counts = { agents: 0, sessions: 0, messages: 0, tasks: 0 };
  for (let a = 0; a < 3; a++) {
    const { createAgent } = await graphql<{ createAgent: { id: string } }>(
      routerUrl,
      'mutation($input: CreateAgentInput!) { createAgent(input: $input) { id } }',
      { input: { name: `Agent ${a + 1}`, description: 'Benchmark agent', provider: 'echo', model: 'echo-1', systemPrompt: 'Answer briefly.' } },
      token,
    );
    counts.agents++;
    for (let s = 0; s < 2; s++) {
      const { createSession } = await graphql<{ createSession: { id: string } }>(
        routerUrl,
        'mutation($agentId: ID!, $title: String) { createSession(agentId: $agentId, title: $title) { id } }',
        { agentId: createAgent.id, title: `Session ${s + 1}` },
        token,
      );
      counts.sessions++;
      for (let m = 0; m < 3; m++) {
        await graphql(
          routerUrl,
          'mutation($sessionId: ID!, $content: String!) { appendMessage(sessionId: $sessionId, role: USER, content: $content) { id } }',
          { sessionId: createSession.id, content: `Message ${m + 1}: what is the weather like on the benchmark machine today?` },
          token,
        );
        counts.messages++;
      }
      await graphql(
        routerUrl,
        'mutation($input: RunTaskInput!) { runTask(input: $input) { id } }',
        { input: { agentId: createAgent.id, sessionId: createSession.id, input: `Summarise session ${s + 1}.` } },
        token,
      );
      counts.tasks++;
    }
  }
  return { userId: signUp.signUp.user.id, accessToken: token, ...counts };
}
