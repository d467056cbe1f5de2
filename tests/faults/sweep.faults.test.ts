import { randomBytes, randomUUID } from 'node:crypto';
import type { GraphQLSchema } from 'graphql';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signPrincipalProof, SCOPES, type Principal } from '../../lib/principal.js';
import { signUp, type Client } from '../support/client.js';
import { startPlatform, type Platform } from '../support/platform.js';
import { ScenarioReport } from './support/report.js';
import { internalsIn, postOperation, type RawAnswer } from './lib/http.js';
import { OwnerSecrets } from './lib/leaks.js';
import { errorLogs } from './lib/proc.js';
import { buildEntitiesOperation, buildRootOperation, countIdSlots, DESTRUCTIVE_FIELD, type BuiltOperation, type FillMode, type ValueSource } from './lib/operations.js';
import { loadSupergraph, type LoadedSupergraph } from './lib/supergraph.js';
import { runSubscription } from './lib/ws.js';

/**
 * Scenario 7, the cross-tenant sweep. Every root field of the API schema (queries, mutations,
 * subscriptions) and every entity type, generated from the committed supergraph, is called with the
 * owner's object ids: as another user and anonymously through the router, and directly at each
 * subgraph with a valid router proof for the other user, an anonymous proof and none. Nothing the
 * owner has may show in any answer, and nothing of theirs may change. The owner then runs the same
 * generated operations, which must work: the probes were valid calls, refused only for whose they were.
 */

/** Set once the platform is up and seeded: only then do the figures describe a run. */
let ready = false;
const report = new ScenarioReport('cross-tenant-sweep');
let platform: Platform;
let supergraph: LoadedSupergraph;

type User = Awaited<ReturnType<typeof signUp>>;
let owner: User;
let other: User;
let otherKeySecret: string;
/** The owner's ids (every object they have) and strings only they know. */
const secrets = new OwnerSecrets();
/** One id per kind of object, for each user: what ID arguments are filled with. */
const ownerIds: Record<string, string> = {};
const otherIds: Record<string, string> = {};
const KINDS = ['User', 'Agent', 'Session', 'Message', 'Task', 'ApiKey'] as const;
let snapshotBefore: unknown;

/** Leaks found: which probe, as whom, what showed. */
const leaks: string[] = [];
/** Answers with a 5xx status or a masked internal error, and answers showing internals. */
const serverErrors: string[] = [];
const internals: string[] = [];

/** `other-key`: the other user through one of their API keys (default scopes), the other principal kind. */
type Caller = 'owner' | 'other' | 'other-key' | 'anonymous' | 'no-proof';

beforeAll(async () => {
  supergraph = loadSupergraph();
  platform = await startPlatform('faults_sweep', {
    workers: 1,
    env: {
      // The sweep is about isolation: limits stay out of the way so every probe reaches the resolvers.
      RATE_LIMIT_PER_MINUTE: '100000',
      RATE_LIMIT_ANON_PER_MINUTE: '100000',
      RATE_LIMIT_AUTH_PER_MINUTE: '100000',
      ECHO_TOKEN_DELAY_MS: '1',
    },
  });
  report.note('Platform: the 4 subgraphs, the router and 1 worker as separate processes on a fresh database, Redis prefix and RabbitMQ vhost.');
  await seedUsers();
  ready = true;
}, 180_000);

afterEach((context) => {
  if (context.task.result?.state === 'fail') report.count('failedTests');
});

afterAll(async () => {
  await platform?.stop();
  report.set('leaks', leaks.length);
  report.set('serverErrors', serverErrors.length);
  report.set('internalsShown', internals.length);
  // A setup that failed leaves figures that say nothing: marked as stopped early instead.
  await (ready ? report.write() : report.writeIfStopped());
});

// ---- the owner's data, and the other user's own ----

async function data<T = any>(client: Client, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  return client.data<T>(query, variables);
}

async function seedUsers(): Promise<void> {
  const marker = `Zq${randomBytes(6).toString('hex')}`;
  secrets.addStrings(marker);
  owner = await signUp(platform.url, `owner-${marker}@example.com`, 'correct horse battery staple', `Owner ${marker}`);
  other = await signUp(platform.url, `other-${randomUUID().slice(0, 8)}@example.com`);
  secrets.addIds(owner.user.id);
  secrets.addStrings(owner.accessToken, owner.refreshToken, owner.user.email);

  const create = `mutation ($i: CreateAgentInput!) { createAgent(input: $i) { id } }`;
  const agent = (await data(owner.client, create, { i: { name: `Agent ${marker}`, description: `About ${marker}`, provider: 'echo', model: 'echo-1', systemPrompt: `Prompt ${marker}`, metadata: { secret: marker } } })).createAgent.id;
  const paused = (await data(owner.client, create, { i: { name: `Paused ${marker}`, provider: 'echo', model: 'echo-1' } })).createAgent.id;
  await data(owner.client, `mutation ($id: ID!) { updateAgent(id: $id, input: { status: PAUSED }) { id } }`, { id: paused });
  const session = (await data(owner.client, `mutation ($a: ID!, $t: String) { createSession(agentId: $a, title: $t) { id } }`, { a: agent, t: `Title ${marker}` })).createSession.id;
  const append = `mutation ($s: ID!, $r: MessageRole!, $c: String!) { appendMessage(sessionId: $s, role: $r, content: $c) { id } }`;
  const message = (await data(owner.client, append, { s: session, r: 'USER', c: `Message ${marker}` })).appendMessage.id;
  await data(owner.client, append, { s: session, r: 'ASSISTANT', c: `Answer ${marker}` });
  const run = `mutation ($i: RunTaskInput!) { runTask(input: $i) { id } }`;
  const task = (await data(owner.client, run, { i: { agentId: agent, sessionId: session, input: `Question ${marker}`, idempotencyKey: `key-${marker}` } })).runTask.id;
  await data(owner.client, run, { i: { agentId: agent, input: `One-off ${marker}` } });
  const keys = [];
  for (const name of [`Key ${marker}`, `Revoked ${marker}`]) {
    keys.push((await data(owner.client, `mutation ($n: String!) { createApiKey(name: $n) { secret apiKey { id prefix } } }`, { n: name })).createApiKey);
  }
  await data(owner.client, `mutation ($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: keys[1].apiKey.id });
  for (const key of keys) secrets.addStrings(key.secret, key.apiKey.prefix);
  Object.assign(ownerIds, { User: owner.user.id, Agent: agent, Session: session, Message: message, Task: task, ApiKey: keys[0].apiKey.id });

  // The other user has objects of every kind too, so that lists are not empty and mixed calls are possible.
  const otherAgent = (await data(other.client, create, { i: { name: 'Mine', provider: 'echo', model: 'echo-1' } })).createAgent.id;
  const otherSession = (await data(other.client, `mutation ($a: ID!) { createSession(agentId: $a, title: "mine") { id } }`, { a: otherAgent })).createSession.id;
  const otherMessage = (await data(other.client, append, { s: otherSession, r: 'USER', c: 'mine' })).appendMessage.id;
  const otherTask = (await data(other.client, run, { i: { agentId: otherAgent, sessionId: otherSession, input: 'mine' } })).runTask.id;
  const otherKeyCreated = (await data(other.client, `mutation { createApiKey(name: "mine") { secret apiKey { id } } }`)).createApiKey;
  const otherKey = otherKeyCreated.apiKey.id;
  otherKeySecret = otherKeyCreated.secret;
  Object.assign(otherIds, { User: other.user.id, Agent: otherAgent, Session: otherSession, Message: otherMessage, Task: otherTask, ApiKey: otherKey });

  // Every task finished and every answer appended: the owner's data is still from here on.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { tasks } = await data(owner.client, `{ tasks(first: 20) { edges { node { status } } } }`);
    const { session: s } = await data(owner.client, `query ($s: ID!) { session(id: $s) { messages { totalCount } } }`, { s: session });
    const mine = await data(other.client, `query ($id: ID!) { task(id: $id) { status } }`, { id: otherTask });
    if (tasks.edges.every((e: any) => e.node.status === 'SUCCEEDED') && s.messages.totalCount === 4 && mine.task.status === 'SUCCEEDED') break;
    if (Date.now() > deadline) throw new Error('the seed tasks did not finish within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  snapshotBefore = await ownerSnapshot();
  secrets.collectIds(snapshotBefore);
  report.set('ownerIds', secrets.ids.size);
  report.note(`Owner data: 2 agents (one PAUSED), 1 session with 4 messages, 2 SUCCEEDED tasks with their events, 2 API keys (one revoked); ${secrets.ids.size} ids and ${secrets.strings.size} secret strings watched for.`);
}

/** Everything the owner has, as they see it; compared before and after the other callers' probes. */
async function ownerSnapshot(): Promise<unknown> {
  const c = owner.client;
  return {
    me: (await data(c, `{ me { id email name createdAt } }`)).me,
    apiKeys: (await data(c, `{ apiKeys { id name prefix scopes createdAt lastUsedAt revokedAt } }`)).apiKeys,
    agents: (await data(c, `{ agents(first: 20) { totalCount edges { node { id name description provider model systemPrompt temperature maxTokens status metadata createdAt updatedAt deletedAt owner { id } } } } }`)).agents,
    sessions: (await data(c, `{ sessions(first: 20) { totalCount edges { node { id title createdAt updatedAt agent { id } messages(first: 20) { totalCount edges { node { id role content tokenCount createdAt task { id } } } } } } } }`)).sessions,
    tasks: (await data(c, `{ tasks(first: 20) { totalCount edges { node { id status input output error attempts provider model systemPrompt idempotencyKey createdAt startedAt finishedAt updatedAt usage { totalTokens } agent { id } session { id } events { sequence type delta attempt } } } } }`)).tasks,
  };
}

// ---- probes ----

interface Probe {
  /** e.g. "router Query.agent [ids]" */
  label: string;
  caller: Caller;
  operation: BuiltOperation;
}

function source(owners: ('owner' | 'other')[] = []): ValueSource {
  return {
    id: (kind, slot) => {
      const ids = (owners[slot] ?? 'owner') === 'owner' ? ownerIds : otherIds;
      const id = ids[kind];
      if (!id) throw new Error(`no ${kind} id to pass`);
      return id;
    },
    unique: () => randomUUID().slice(0, 8),
  };
}

interface Variant {
  tag: string;
  operation: BuiltOperation;
  /** Whether the first ID passed (the object the field is about) is the owner's. */
  aimsAtOwner: boolean;
}

/**
 * The calls to make for one operation: with every ID argument filled (optional ones too) and with
 * the required ones only, and — for the other user — every mix of the owner's and their own ids
 * when it passes several (their own agent with the owner's session...).
 */
function variants(build: (source: ValueSource, mode: FillMode) => BuiltOperation, caller: Caller): Variant[] {
  const out: Variant[] = [];
  const seen = new Set<string>();
  const add = (tag: string, operation: BuiltOperation, aimsAtOwner = true) => {
    const key = operation.query + JSON.stringify(operation.ids);
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ tag, operation, aimsAtOwner });
  };
  add('ids', build(source(), 'ids'));
  add('required', build(source(), 'required'));
  if (caller !== 'owner') {
    const slots = countIdSlots((s) => build(s, 'ids'));
    // Every assignment but "all the owner's" (done) and "all their own" (no one else's ids: nothing to refuse).
    for (let mask = 1; slots >= 2 && mask < 2 ** slots - 1; mask++) {
      const owners = Array.from({ length: slots }, (_, slot) => ((mask >> slot) & 1 ? 'other' : 'owner') as 'owner' | 'other');
      add(`mixed ${owners.join('/')}`, build(source(owners), 'ids'), owners[0] === 'owner');
    }
  }
  return out;
}

const proofFor = (principal: Principal): Record<string, string> => ({ 'x-principal-proof': signPrincipalProof(principal, platform.internalSecret) });
const CALLER_HEADERS: Record<Caller, () => Record<string, string>> = {
  owner: () => ({ authorization: `Bearer ${owner.accessToken}` }),
  other: () => ({ authorization: `Bearer ${other.accessToken}` }),
  'other-key': () => ({ 'x-api-key': otherKeySecret }),
  anonymous: () => ({}),
  'no-proof': () => ({}),
};
const DIRECT_HEADERS: Record<Caller, () => Record<string, string>> = {
  owner: () => proofFor({ kind: 'user', userId: owner.user.id, scopes: [...SCOPES] }),
  other: () => proofFor({ kind: 'user', userId: other.user.id, scopes: [...SCOPES] }),
  'other-key': () => proofFor({ kind: 'api_key', userId: other.user.id, apiKeyId: otherIds.ApiKey, scopes: [...SCOPES] }),
  anonymous: () => proofFor({ kind: 'anonymous', scopes: [] }),
  'no-proof': () => ({}),
};

/** Sends one probe, counts it and checks the answer for the owner's data, 5xx and internals. */
async function probe(url: string, headers: Record<string, string>, item: Probe, surface: string): Promise<RawAnswer> {
  const answer = await postOperation(url, item.operation.query, item.operation.variables, headers);
  report.count('probes');
  report.count(`probes.${surface}`);
  report.count(`probes.as.${item.caller}`);
  const where = `${item.label} as ${item.caller} (${answer.status})`;
  if (answer.status >= 500 || answer.codes.includes('INTERNAL_SERVER_ERROR')) serverErrors.push(`${where}: ${answer.text.slice(0, 300)}`);
  const shown = internalsIn(answer.text);
  if (shown) internals.push(`${where}: ${shown}`);
  if (item.caller !== 'owner') {
    const found = secrets.foundIn(answer.text, item.operation.ids);
    if (found.length > 0) leaks.push(`${where}: ${found.join(', ')} in ${answer.text.slice(0, 300)}`);
  }
  return answer;
}

const rootFields = (schema: GraphQLSchema, type: 'query' | 'mutation' | 'subscription') =>
  Object.keys((type === 'query' ? schema.getQueryType() : type === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType())?.getFields() ?? {}).filter(
    (name) => !name.startsWith('_'),
  );

/** True when the owner's answer shows some of the owner's data (the probe aimed at something real). */
const showsOwnerData = (answer: RawAnswer) => secrets.foundIn(JSON.stringify(answer.json?.data ?? null)).length > 0;

describe('cross-tenant sweep', () => {
  it('loads the API schema and every subgraph from the committed supergraph', () => {
    const { api, subgraphs, entityTypes } = supergraph;
    report.set('schema.queryFields', rootFields(api, 'query').length);
    report.set('schema.mutationFields', rootFields(api, 'mutation').length);
    report.set('schema.subscriptionFields', rootFields(api, 'subscription').length);
    report.set('schema.entityTypes', entityTypes.length);
    report.set('schema.subgraphs', subgraphs.length);
    report.note(`API schema: ${rootFields(api, 'query').join(', ')} | ${rootFields(api, 'mutation').join(', ')} | ${rootFields(api, 'subscription').join(', ')}; entities ${entityTypes.join(', ')}.`);
    expect(api.getQueryType()?.getFields()._entities).toBeUndefined();
    expect(subgraphs.map((s) => s.name).sort()).toEqual(Object.keys(platform.subgraphs).sort());
    expect(rootFields(api, 'query').length).toBeGreaterThan(0);
    expect(entityTypes.length).toBeGreaterThan(0);
  });

  it('shows nothing of the owner to another user or an anonymous caller, for every root field through the router', async () => {
    const { api } = supergraph;
    for (const type of ['query', 'mutation'] as const) {
      for (const field of rootFields(api, type)) {
        for (const caller of ['other', 'other-key', 'anonymous'] as const) {
          for (const { tag, operation } of variants((s, mode) => buildRootOperation(api, type, field, s, { mode, kinds: KINDS }), caller)) {
            await probe(platform.url, CALLER_HEADERS[caller](), { label: `router ${type}.${field} [${tag}]`, caller, operation }, 'router');
          }
        }
      }
    }
    expect(serverErrors, `${serverErrors.join('\n')}\n${errorLogs(platform.processes)}`).toEqual([]);
    expect(internals, internals.join('\n')).toEqual([]);
    expect(leaks, leaks.join('\n')).toEqual([]);
  });

  it('refuses _entities through the router for every entity type, whoever asks', async () => {
    for (const typeName of supergraph.entityTypes) {
      const kind = typeName as (typeof KINDS)[number];
      for (const caller of ['owner', 'other', 'other-key', 'anonymous'] as const) {
        const operation = buildEntitiesOperation(supergraph.api, typeName, [ownerIds[kind]], source(), { mode: 'ids', kinds: KINDS });
        const answer = await probe(platform.url, CALLER_HEADERS[caller](), { label: `router _entities ${typeName}`, caller, operation }, 'router-entities');
        expect(answer.status, `${typeName} as ${caller}`).toBe(400);
        // Unknown field `_entities`, unknown type `_Any`: each a validation error.
        expect(answer.codes.length, `${typeName} as ${caller}`).toBeGreaterThan(0);
        expect(new Set(answer.codes), `${typeName} as ${caller}`).toEqual(new Set(['GRAPHQL_VALIDATION_FAILED']));
        expect(answer.json?.data).toBeUndefined();
      }
    }
    expect(leaks, leaks.join('\n')).toEqual([]);
  });

  it("shows nothing of the owner at any subgraph reached directly: another user's proof, an anonymous proof, no proof", async () => {
    for (const subgraph of supergraph.subgraphs) {
      const url = `${platform.subgraphs[subgraph.name as keyof Platform['subgraphs']]}/graphql`;
      const probes: { label: string; build: (s: ValueSource, mode: FillMode) => BuiltOperation; mutation: boolean }[] = [];
      for (const typeName of subgraph.entityTypes) {
        probes.push({
          label: `${subgraph.name} _entities ${typeName}`,
          build: (s, mode) => buildEntitiesOperation(subgraph.schema, typeName, [ownerIds[typeName]], s, { mode, kinds: KINDS }),
          mutation: false,
        });
      }
      for (const type of ['query', 'mutation'] as const) {
        for (const field of rootFields(subgraph.schema, type)) {
          probes.push({ label: `${subgraph.name} ${type}.${field}`, build: (s, mode) => buildRootOperation(subgraph.schema, type, field, s, { mode, kinds: KINDS }), mutation: type === 'mutation' });
        }
      }
      for (const { label, build, mutation } of probes) {
        for (const caller of ['other', 'other-key', 'anonymous', 'no-proof', 'owner'] as const) {
          // The owner's direct mutations would change the data compared below; their queries show the probes reach it.
          if (caller === 'owner' && mutation) continue;
          for (const { tag, operation } of variants(build, caller)) {
            const answer = await probe(url, DIRECT_HEADERS[caller](), { label: `${label} [${tag}]`, caller, operation }, 'subgraph');
            if (caller === 'no-proof') {
              expect(answer.status, label).toBe(401);
              expect(answer.codes, label).toEqual(['UNAUTHENTICATED']);
            }
            if (caller === 'owner' && label.includes('_entities') && tag === 'ids') {
              expect(answer.codes, `${label} as owner: ${answer.text.slice(0, 300)}`).toEqual([]);
            }
          }
        }
      }
    }
    expect(serverErrors, `${serverErrors.join('\n')}\n${errorLogs(platform.processes)}`).toEqual([]);
    expect(internals, internals.join('\n')).toEqual([]);
    expect(leaks, leaks.join('\n')).toEqual([]);
  });

  it('refuses every subscription field over graphql-ws to another user and anonymously, with no event', async () => {
    const wsUrl = platform.url.replace(/^http/, 'ws');
    for (const field of rootFields(supergraph.api, 'subscription')) {
      for (const caller of ['other', 'other-key', 'anonymous', 'owner'] as const) {
        for (const { tag, operation, aimsAtOwner } of variants((s, mode) => buildRootOperation(supergraph.api, 'subscription', field, s, { mode, kinds: KINDS }), caller)) {
          const credential = { owner: owner.accessToken, other: other.accessToken, 'other-key': otherKeySecret, anonymous: undefined }[caller];
          const outcome = await runSubscription(wsUrl, credential, operation.query, operation.variables);
          report.count('probes');
          report.count('probes.subscription');
          report.count(`probes.as.${caller}`);
          const where = `ws subscription.${field} [${tag}] as ${caller}`;
          const shown = internalsIn(outcome.text);
          if (shown) internals.push(`${where}: ${shown}`);
          if (caller === 'owner') {
            // The owner's finished task replays its events and completes.
            expect(outcome.errors, where).toEqual([]);
            expect(outcome.events.length, where).toBeGreaterThan(0);
            continue;
          }
          const found = secrets.foundIn(outcome.text, operation.ids);
          if (found.length > 0) leaks.push(`${where}: ${found.join(', ')}`);
          // Their own task with an id of the owner's deeper in the selection streams their own events (checked for leaks above).
          if (!aimsAtOwner && caller !== 'anonymous') continue;
          expect(outcome.events, where).toEqual([]);
          expect(outcome.errors.length, where).toBeGreaterThan(0);
          if (caller === 'anonymous') expect(outcome.closeCode, where).toBe(4401);
          else expect(outcome.text, where).toContain('NOT_FOUND');
        }
      }
    }
    expect(internals, internals.join('\n')).toEqual([]);
    expect(leaks, leaks.join('\n')).toEqual([]);
  });

  it("leaves every object of the owner's unchanged", async () => {
    const after = await ownerSnapshot();
    expect(after).toEqual(snapshotBefore);
    report.note('The owner’s snapshot (profile, keys, agents, sessions with messages, tasks with events) is identical before and after every probe of the other callers.');
  });

  it('runs the same generated operations as the owner: queries show their data, mutations on their ids succeed', async () => {
    const { api } = supergraph;
    const failures: string[] = [];
    for (const field of rootFields(api, 'query')) {
      for (const { tag, operation } of variants((s, mode) => buildRootOperation(api, 'query', field, s, { mode, kinds: KINDS }), 'owner')) {
        const answer = await probe(platform.url, CALLER_HEADERS.owner(), { label: `router query.${field} [${tag}]`, caller: 'owner', operation }, 'router');
        if (answer.codes.length > 0) failures.push(`query.${field} [${tag}]: ${answer.text.slice(0, 300)}`);
        else if (operation.ids.length > 0 && !showsOwnerData(answer)) failures.push(`query.${field} [${tag}] showed none of the owner's data: ${answer.text.slice(0, 300)}`);
      }
    }
    // Changes first, then what deletes or ends an object (a deleted agent takes no session).
    const mutations = rootFields(api, 'mutation').sort((a, b) => Number(DESTRUCTIVE_FIELD.test(a)) - Number(DESTRUCTIVE_FIELD.test(b)));
    let succeeded = 0;
    for (const field of mutations) {
      const operation = buildRootOperation(api, 'mutation', field, source(), { mode: 'ids', kinds: KINDS });
      const answer = await probe(platform.url, CALLER_HEADERS.owner(), { label: `router mutation.${field} [ids]`, caller: 'owner', operation }, 'router');
      if (answer.codes.length === 0) succeeded += 1;
      // Only a call on the owner's own objects is sure to be valid (signUp with "x"-ish values is not meant to be).
      else if (operation.ids.length > 0) failures.push(`mutation.${field}: ${answer.text.slice(0, 300)}`);
    }
    report.set('ownerMutationsSucceeded', succeeded);
    expect(failures, failures.join('\n')).toEqual([]);
    expect(serverErrors, `${serverErrors.join('\n')}\n${errorLogs(platform.processes)}`).toEqual([]);
    report.note(
      `Probes: ${report.figures.probes} in all (${report.figures['probes.router'] ?? 0} through the router, ${report.figures['probes.router-entities'] ?? 0} _entities through the router, ${report.figures['probes.subgraph'] ?? 0} directly at subgraphs, ${report.figures['probes.subscription'] ?? 0} subscriptions); ${leaks.length} leaks.`,
    );
  });
});
