import { HeaderMap, type GraphQLRequestContext, type GraphQLRequestListener } from '@apollo/server';
import { buildSchema, getOperationAST, parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { ANONYMOUS, type Principal } from '../lib/principal.js';
import type { RouterContext } from './context.js';
import { DEFAULT_OPERATION_LIMITS } from './operation-limits.js';
import { policyPlugin, type PolicyPluginOptions } from './policy-plugin.js';

const schema = buildSchema(`
  type Query { me: User agents: [Agent!]! }
  type User { id: ID! }
  type Agent { id: ID! parent: Agent }
`);
const USER: Principal = { kind: 'user', userId: 'u1', scopes: [] };
const DEEP = '{ agents { parent { parent { parent { id } } } } }';

/** What didResolveOperation decides for `query` run by `principal`: undefined when it lets it through, else the error code. */
async function decide(options: Partial<PolicyPluginOptions>, principal: Principal, query: string, operationName?: string): Promise<string | undefined> {
  const plugin = policyPlugin({ limits: { ...DEFAULT_OPERATION_LIMITS, maxDepth: 3 }, ...options });
  const listener = (await plugin.requestDidStart!({} as GraphQLRequestContext<RouterContext>)) as GraphQLRequestListener<RouterContext>;
  const document = parse(query);
  const requestContext = {
    document,
    // As Apollo Server resolves it: undefined when the name matches no operation.
    operation: getOperationAST(document, operationName) ?? undefined,
    operationName: null,
    schema,
    request: { query, operationName },
    response: { http: { headers: new HeaderMap() } },
    contextValue: { principal, record: { requestId: 'r1', clientIp: '127.0.0.1', errorCodes: [] } },
  } as unknown as Parameters<NonNullable<GraphQLRequestListener<RouterContext>['didResolveOperation']>>[0];
  try {
    await listener.didResolveOperation!(requestContext);
    return undefined;
  } catch (error) {
    return String((error as { extensions?: { code?: unknown } }).extensions?.code);
  }
}

describe('policyPlugin', () => {
  it('refuses anonymous callers outside signing in, and operations over the limits, by default', async () => {
    expect.assertions(4);
    expect(await decide({}, ANONYMOUS, '{ agents { id } }')).toBe('UNAUTHENTICATED');
    expect(await decide({}, ANONYMOUS, '{ me { id } }')).toBeUndefined();
    expect(await decide({}, USER, DEEP)).toBe('OPERATION_TOO_COMPLEX');
    expect(await decide({}, USER, '{ agents { id } }')).toBeUndefined();
  });

  it('lets anonymous callers run every operation with allowAnonymous, limits still applying', async () => {
    expect.assertions(2);
    expect(await decide({ allowAnonymous: true }, ANONYMOUS, '{ agents { id } }')).toBeUndefined();
    expect(await decide({ allowAnonymous: true }, ANONYMOUS, DEEP)).toBe('OPERATION_TOO_COMPLEX');
  });

  it('skips the operation limits with limitsEnabled: false, not the anonymous refusal', async () => {
    expect.assertions(2);
    expect(await decide({ limitsEnabled: false }, USER, DEEP)).toBeUndefined();
    expect(await decide({ limitsEnabled: false }, ANONYMOUS, DEEP)).toBe('UNAUTHENTICATED');
  });

  it('refuses an operation name that names no operation as OPERATION_RESOLUTION_FAILURE (the gateway would throw a 500)', async () => {
    expect.assertions(3);
    expect(await decide({}, USER, '{ me { id } }', 'Missing')).toBe('OPERATION_RESOLUTION_FAILURE');
    expect(await decide({}, USER, 'query A { me { id } } query B { me { id } }')).toBe('OPERATION_RESOLUTION_FAILURE');
    expect(await decide({}, USER, 'query A { me { id } } query B { me { id } }', 'B')).toBeUndefined();
  });
});
