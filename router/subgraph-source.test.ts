import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { PRINCIPAL_HEADER, REQUEST_ID_HEADER, verifyPrincipalProof } from '../lib/principal.js';
import type { RouterContext } from './context.js';
import { createSubgraphFetcher } from '../lib/http-client.js';
import { dedupeRepresentations, expandEntities, SubgraphDataSource } from './subgraph-source.js';

const SECRET = 'subgraph-source-test-secret-0123456789abcdef';
const disposers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (disposers.length > 0) await disposers.pop()!();
});

describe('dedupeRepresentations', () => {
  it('keeps each distinct representation once and where each position went', () => {
    const deduped = dedupeRepresentations([
      { __typename: 'Product', upc: '1' },
      { __typename: 'Product', upc: '2' },
      { __typename: 'Product', upc: '1' },
      { __typename: 'Product', upc: '1' },
    ]);
    expect(deduped).toEqual({ json: ['{"__typename":"Product","upc":"1"}', '{"__typename":"Product","upc":"2"}'], positions: [0, 1, 0, 0] });
  });

  it('leaves alone what has no duplicates or is not a list', () => {
    expect(dedupeRepresentations([{ __typename: 'User', id: '1' }, { __typename: 'User', id: '2' }])).toBeUndefined();
    expect(dedupeRepresentations([{ __typename: 'User', id: '1' }])).toBeUndefined();
    expect(dedupeRepresentations(undefined)).toBeUndefined();
  });
});

describe('expandEntities', () => {
  it('gives every position its own copy of its entity', () => {
    const response = { data: { _entities: [{ name: 'Table', tags: ['a'] }, null] as unknown[] } };
    expandEntities(response, [0, 1, 0]);
    const [first, second, third] = response.data._entities as ({ name: string; tags: string[] } | null)[];
    expect([first, second, third]).toEqual([{ name: 'Table', tags: ['a'] }, null, { name: 'Table', tags: ['a'] }]);
    // The gateway merges later fetches into these objects in place: they must not be shared.
    expect(third).not.toBe(first);
    expect(third!.tags).not.toBe(first!.tags);
  });

  it('repeats an entity error for every position it stands for, and keeps the others', () => {
    const response = {
      data: { _entities: [null, { name: 'Couch' }] as unknown[] },
      errors: [
        { message: 'gone', path: ['_entities', 0, 'name'] },
        { message: 'elsewhere', path: ['other'] },
      ],
    };
    expandEntities(response, [0, 1, 0]);
    expect(response.errors).toEqual([
      { message: 'gone', path: ['_entities', 0, 'name'] },
      { message: 'gone', path: ['_entities', 2, 'name'] },
      { message: 'elsewhere', path: ['other'] },
    ]);
  });
});

describe('SubgraphDataSource', () => {
  async function subgraph(answer: (body: { query: string; variables: Record<string, unknown> }) => unknown, status = 200) {
    const seen: { body: { query: string; variables: Record<string, unknown>; operationName?: string }; headers: Record<string, unknown> }[] = [];
    const server: Server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as { query: string; variables: Record<string, unknown> };
        seen.push({ body, headers: req.headers });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer(body)));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    disposers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const client = createSubgraphFetcher();
    disposers.push(() => client.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
    return { source: new SubgraphDataSource('products', url, SECRET, client.fetcher, pino({ level: 'silent' })), seen };
  }

  function fetchOf(variables: Record<string, unknown>, context: Partial<RouterContext> = {}): GraphQLDataSourceProcessOptions<Partial<RouterContext>> {
    return {
      kind: 'health check',
      request: { query: 'query Q($representations: [_Any!]!) { _entities(representations: $representations) { ... on Product { name } } }', variables, operationName: 'Q' },
      context,
    } as unknown as GraphQLDataSourceProcessOptions<Partial<RouterContext>>;
  }

  it('sends each distinct representation once and answers every position', async () => {
    expect.assertions(4);
    const { source, seen } = await subgraph(({ variables }) => ({
      data: { _entities: (variables.representations as { upc: string }[]).map(({ upc }) => ({ name: `product ${upc}` })) },
    }));
    const representations = [1, 2, 1, 1, 2].map((upc) => ({ __typename: 'Product', upc: String(upc) }));
    const response = await source.process(fetchOf({ representations, first: 3 }));
    expect(seen[0].body.variables).toEqual({ representations: representations.slice(0, 2), first: 3 });
    expect(seen[0].body.operationName).toBe('Q');
    expect(response.data?._entities).toEqual([1, 2, 1, 1, 2].map((upc) => ({ name: `product ${upc}` })));
    expect(response.errors).toBeUndefined();
  });

  it("sends the router's proof of the principal and the request id, and nothing of the client's", async () => {
    expect.assertions(3);
    const { source, seen } = await subgraph(() => ({ data: { _entities: [] } }));
    const context: Partial<RouterContext> = { principal: { kind: 'user', userId: 'u1', scopes: [] }, record: { requestId: 'req-1', clientIp: '127.0.0.1', errorCodes: [] } };
    await source.process(fetchOf({ representations: [] }, context));
    const { headers } = seen[0];
    expect(verifyPrincipalProof(headers[PRINCIPAL_HEADER] as string, SECRET).principal).toEqual({ kind: 'user', userId: 'u1', scopes: [] });
    expect(headers[REQUEST_ID_HEADER]).toBe('req-1');
    expect(headers.authorization).toBeUndefined();
  });

  it('sends identical query fetches of one caller in flight together once, and gives each its own answer', async () => {
    expect.assertions(4);
    const { source, seen } = await subgraph(() => ({ data: { _entities: [{ name: 'Table' }] } }));
    const alice: Partial<RouterContext> = { principal: { kind: 'user', userId: 'alice', scopes: ['agents:read'] } };
    const narrower: Partial<RouterContext> = { principal: { kind: 'user', userId: 'alice', scopes: [] } };
    const bob: Partial<RouterContext> = { principal: { kind: 'user', userId: 'bob', scopes: ['agents:read'] } };
    const variables = { representations: [{ __typename: 'Product', upc: '1' }] };
    const [first, second] = await Promise.all([source.process(fetchOf(variables, { ...alice })), source.process(fetchOf(variables, { ...alice }))]);
    expect(seen).toHaveLength(1);
    expect(first.data).toEqual(second.data);
    expect(first.data?._entities[0]).not.toBe(second.data?._entities[0]);
    // Another caller, or the same user with other scopes, never shares.
    await Promise.all([source.process(fetchOf(variables, { ...alice })), source.process(fetchOf(variables, { ...narrower })), source.process(fetchOf(variables, { ...bob }))]);
    expect(seen).toHaveLength(4);
  });

  it('never shares a mutation, nor anything when sharing is off', async () => {
    expect.assertions(2);
    const { source, seen } = await subgraph(() => ({ data: { addThing: true } }));
    const mutation = { kind: 'health check', request: { query: 'mutation M { addThing }', variables: {} }, context: {} } as unknown as GraphQLDataSourceProcessOptions<Partial<RouterContext>>;
    await Promise.all([source.process(mutation), source.process(mutation)]);
    expect(seen).toHaveLength(2);
    const client = createSubgraphFetcher();
    disposers.push(() => client.close());
    const unshared = new SubgraphDataSource('products', source.url, SECRET, client.fetcher, pino({ level: 'silent' }), { shareInFlight: false });
    await Promise.all([unshared.process(fetchOf({ representations: [] })), unshared.process(fetchOf({ representations: [] }))]);
    expect(seen).toHaveLength(4);
  });

  it("passes on a subgraph's own error from a 4xx answer, and turns anything else into SERVICE_UNAVAILABLE", async () => {
    expect.assertions(2);
    const refused = await subgraph(() => ({ errors: [{ message: 'Not yours.', extensions: { code: 'FORBIDDEN' } }] }), 403);
    await expect(refused.source.process(fetchOf({ representations: [] }))).rejects.toMatchObject({ message: 'Not yours.', extensions: { code: 'FORBIDDEN' } });
    const broken = await subgraph(() => 'not an object', 200);
    await expect(broken.source.process(fetchOf({ representations: [] }))).rejects.toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
  });
});
