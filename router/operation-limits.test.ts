import { buildSchema, getIntrospectionQuery, GraphQLError, parse, type OperationDefinitionNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import { checkOperationLimits, DEFAULT_OPERATION_LIMITS, measureOperation, tokenLimitError, type OperationMeasure } from './operation-limits.js';

const schema = buildSchema(`
  type Query { me: User agents(first: Int = 20, after: String): AgentConnection! agent(id: ID!): Agent tags: [String!]! }
  type Mutation { login(email: String!): String }
  type User { id: ID! agents: [Agent!]! }
  type Agent { id: ID! name: String! parent: Agent children: [Agent!]! sessions(first: Int = 20): SessionConnection! }
  type AgentConnection { edges: [AgentEdge!]! totalCount: Int! }
  type AgentEdge { node: Agent! cursor: String! }
  type SessionConnection { edges: [SessionEdge!]! }
  type SessionEdge { node: Session! }
  type Session { id: ID! }
`);

function measure(query: string, options: { variables?: Record<string, unknown>; withSchema?: boolean; operationName?: string } = {}): OperationMeasure {
  const document = parse(query);
  const operation = document.definitions.find(
    (d): d is OperationDefinitionNode => d.kind === 'OperationDefinition' && (!options.operationName || d.name?.value === options.operationName),
  )!;
  return measureOperation(document, operation, { schema: options.withSchema === false ? undefined : schema, variables: options.variables });
}

describe('depth', () => {
  it('counts fields on the longest path, root field = 1', () => {
    expect(measure('{ __typename }').depth).toBe(1);
    expect(measure('{ me { id } }').depth).toBe(2);
    expect(measure('{ me { id } agent(id: 1) { parent { parent { id } } } }').depth).toBe(4);
  });

  it('follows fragment spreads and inline fragments', () => {
    const query = `
      query { agent(id: 1) { ...F } }
      fragment F on Agent { parent { ... on Agent { ...G } } }
      fragment G on Agent { parent { id } }`;
    expect(measure(query).depth).toBe(4);
  });

  it('stops at fragment cycles instead of looping', () => {
    const query = `
      query { agent(id: 1) { ...A } }
      fragment A on Agent { parent { ...B } }
      fragment B on Agent { parent { ...A } }`;
    expect(measure(query).depth).toBe(3);
  });
});

describe('aliases, root fields and directives', () => {
  it('counts aliases everywhere, once per place a fragment is spread', () => {
    expect(measure('{ a: me { b: id } c: me { id } }').aliases).toBe(3);
    expect(measure('query { agent(id: 1) { ...F ...F } } fragment F on Agent { x: id y: name }').aliases).toBe(4);
  });

  it('measures a fragment bomb in linear time while counting its full expansion', () => {
    const levels = 30;
    const fragments = Array.from({ length: levels }, (_, i) => (i === 0 ? 'fragment F0 on Agent { x: id }' : `fragment F${i} on Agent { ...F${i - 1} ...F${i - 1} }`));
    const started = performance.now();
    const measured = measure(`query { agent(id: 1) { ...F${levels - 1} } } ${fragments.join(' ')}`);
    expect(performance.now() - started).toBeLessThan(100);
    expect(measured.aliases).toBe(2 ** (levels - 1));
    expect(checkOperationLimits(measured, DEFAULT_OPERATION_LIMITS)?.message).toMatch(/^Alias count \d+ exceeds the limit of 30\.$/);
  });

  it('lists root field names, through fragments at the root', () => {
    const measured = measure('query { ...Q __typename } fragment Q on Query { me { id } mine: agents { totalCount } }');
    expect(measured.rootFieldNames).toEqual(['me', 'agents', '__typename']);
    expect(measured.rootFields).toBe(3);
    expect(measure('mutation { login(email: "a") }').rootFieldNames).toEqual(['login']);
  });

  it('counts directives on the operation, fields, fragments and spreads', () => {
    const query = `
      query Q @a { me @include(if: true) { id @skip(if: false) ...F @b } }
      fragment F on User @c { id @d }`;
    expect(measure(query).directives).toBe(6);
  });
});

describe('cost', () => {
  it('costs each field 1', () => {
    expect(measure('{ me { id } }').cost).toBe(2);
    expect(measure('{ tags }').cost).toBe(1);
  });

  it('multiplies a paginated field by `first`, its schema default, or a variable', () => {
    // agents (1) + 20 × [edges (1) + node (1) + id (1)]; the edges list is the page, not multiplied again.
    expect(measure('{ agents { edges { node { id } } } }').cost).toBe(61);
    expect(measure('{ agents(first: 5) { edges { node { id } } } }').cost).toBe(16);
    const byVariable = measure('query ($n: Int) { agents(first: $n) { edges { node { id } } } }', { variables: { n: 2 } });
    expect(byVariable.cost).toBe(7);
    expect(byVariable.costUsesVariables).toBe(true);
    expect(measure('query ($n: Int = 3) { agents(first: $n) { edges { node { id } } } }').cost).toBe(10);
    expect(measure('{ agents(first: 5) { totalCount } }').costUsesVariables).toBe(false);
  });

  it('multiplies list fields without `first` by the default list size, nested multiplicatively', () => {
    expect(measure('{ me { agents { id } } }').cost).toBe(22);
    expect(measure('{ me { agents { children { id } } } }').cost).toBe(1 + (1 + 20 * (1 + 20 * 1)));
    const nested = '{ agents(first: 10) { edges { node { sessions(first: 10) { edges { node { id } } } } } } }';
    expect(measure(nested).cost).toBe(331);
  });

  it('without a schema, only `first` multiplies', () => {
    expect(measure('{ agents(first: 5) { edges { node { id } } } }', { withSchema: false }).cost).toBe(16);
    expect(measure('{ me { agents { id } } }', { withSchema: false }).cost).toBe(3);
  });

  it('leaves introspection to graphql-js validation', () => {
    const measured = measure(getIntrospectionQuery({ descriptions: true, inputValueDeprecation: true }));
    expect(measured).toMatchObject({ depth: 1, cost: 1, rootFieldNames: ['__schema'] });
    expect(checkOperationLimits(measured, DEFAULT_OPERATION_LIMITS)).toBeUndefined();
  });
});

describe('checkOperationLimits', () => {
  const within: OperationMeasure = { depth: 12, aliases: 30, rootFields: 20, rootFieldNames: [], directives: 50, cost: 20_000, costUsesVariables: false };

  it('passes an operation at every limit', () => {
    expect(checkOperationLimits(within, DEFAULT_OPERATION_LIMITS)).toBeUndefined();
  });

  it.each([
    [{ depth: 15 }, 'Query depth 15 exceeds the limit of 12.'],
    [{ aliases: 31 }, 'Alias count 31 exceeds the limit of 30.'],
    [{ rootFields: 21 }, 'Root field count 21 exceeds the limit of 20.'],
    [{ directives: 51 }, 'Directive count 51 exceeds the limit of 50.'],
    [{ cost: 20_001 }, 'Query cost 20001 exceeds the limit of 20000.'],
    [{ cost: 2 ** 60 }, 'Query cost above 2^53 exceeds the limit of 20000.'],
  ])('refuses %o with OPERATION_TOO_COMPLEX and HTTP 400', (over, message) => {
    const error = checkOperationLimits({ ...within, ...over }, DEFAULT_OPERATION_LIMITS);
    expect(error?.message).toBe(message);
    expect(error?.extensions).toMatchObject({ code: 'OPERATION_TOO_COMPLEX', http: { status: 400 } });
  });
});

describe('tokenLimitError', () => {
  it("turns graphql-js's token-limit syntax error into OPERATION_TOO_COMPLEX", () => {
    let syntaxError: GraphQLError | undefined;
    try {
      parse(`{ ${'me { id } '.repeat(50)} }`, { maxTokens: 100 });
    } catch (error) {
      syntaxError = error as GraphQLError;
    }
    const replaced = tokenLimitError(syntaxError!, { maxTokens: 100 });
    expect(replaced?.message).toBe('Query token count exceeds the limit of 100.');
    expect(replaced?.extensions).toMatchObject({ code: 'OPERATION_TOO_COMPLEX', http: { status: 400 } });
  });

  it('leaves other syntax errors alone', () => {
    expect(tokenLimitError(new GraphQLError('Syntax Error: Expected Name, found "}".'), { maxTokens: 100 })).toBeUndefined();
  });
});
