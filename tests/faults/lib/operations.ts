import {
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  isUnionType,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputField,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLSchema,
} from 'graphql';

/**
 * Builds a GraphQL operation for any field of a schema: every argument generated from its type,
 * ID arguments filled with real object ids, and a selection of the return type's fields. The
 * cross-tenant sweep runs these as the owner of the ids, as another user and anonymously.
 */

/**
 * Which arguments get a value. `ids`: required ones and every ID argument (optional ones too, in
 * input objects as well); `required`: required ones only (an optional `agentId` filter left out).
 */
export type FillMode = 'ids' | 'required';

export interface ValueSource {
  /**
   * The id for an ID argument naming an object of `kind` (an object type name such as "Agent"),
   * `slot` counting the ID arguments of the operation from 0 in the order they are generated.
   */
  id(kind: string, slot: number): string;
  /** A fresh string, for values that must not collide (emails). */
  unique(): string;
}

export interface BuiltOperation {
  query: string;
  variables: Record<string, unknown>;
  /** Every id the operation passes, in slot order: ids the caller chose, which answers may echo. */
  ids: string[];
}

/**
 * Values for arguments whose type alone says too little to be valid (a provider is a String, but
 * only a few are accepted). Keyed by argument or input field name; everything else comes from the
 * type: String "x", Int 1, Float 0.5, Boolean true, enums their first value.
 */
const VALUE_HINTS: Record<string, (source: ValueSource) => unknown> = {
  provider: () => 'echo',
  model: () => 'echo-1',
  email: (source) => `sweep-${source.unique()}@example.com`,
  password: () => 'correct horse battery staple',
  // Large enough that a page or a context window holds the owner's objects.
  first: () => 10,
  maxTokens: () => 100_000,
  afterSequence: () => 0,
};

/** Field names that end an object, so that the owner runs them last. */
export const DESTRUCTIVE_FIELD = /^(delete|revoke|cancel|logout)/;

/**
 * The object type an ID argument names: `agentId` → Agent, `excludeTaskId` → Task; `id` → the
 * field's own type (`agent(id)`) or the type its name ends with (`deleteAgent(id)`, `revokeApiKey(id)`).
 */
export function idKind(argumentName: string, fieldName: string, returnType: GraphQLNamedType, kinds: readonly string[]): string {
  const endsWith = (text: string) =>
    [...kinds].sort((a, b) => b.length - a.length).find((kind) => text.toLowerCase().endsWith(kind.toLowerCase()));
  let kind: string | undefined;
  if (argumentName === 'id') kind = kinds.includes(returnType.name) ? returnType.name : endsWith(fieldName);
  else if (/Ids?$/.test(argumentName)) kind = endsWith(argumentName.replace(/Ids?$/, ''));
  if (!kind) throw new Error(`Cannot tell which kind of object the ID argument "${argumentName}" of "${fieldName}" names; teach tests/faults/lib/operations.ts.`);
  return kind;
}

const isRequired = (input: GraphQLArgument | GraphQLInputField) => isNonNullType(input.type) && input.defaultValue === undefined;
const isIdInput = (type: GraphQLInputType) => getNamedType(type).name === 'ID';

class OperationBuilder {
  private readonly definitions: string[] = [];
  private readonly variables: Record<string, unknown> = {};
  private readonly ids: string[] = [];

  constructor(
    private readonly source: ValueSource,
    private readonly mode: FillMode,
    private readonly kinds: readonly string[],
    /** Nested object levels below the root field's type that are selected. */
    private readonly maxLevel: number,
  ) {}

  private variable(type: GraphQLInputType, value: unknown): string {
    const name = `v${this.definitions.length + 1}`;
    this.definitions.push(`$${name}: ${String(type)}`);
    this.variables[name] = value;
    return `$${name}`;
  }

  private value(type: GraphQLInputType, name: string, field: { name: string; returnType: GraphQLNamedType }): unknown {
    if (isNonNullType(type)) return this.value(type.ofType, name, field);
    if (isListType(type)) return [this.value(type.ofType, name, field)];
    if (isInputObjectType(type)) {
      const fields = Object.values(type.getFields());
      const chosen = fields.filter((input) => isRequired(input) || (this.mode === 'ids' && isIdInput(input.type)));
      // An input of optional fields only (a patch) with nothing in it would be refused before any ownership check.
      const filled = chosen.length > 0 ? chosen : fields;
      return Object.fromEntries(filled.map((input) => [input.name, this.value(input.type, input.name, field)]));
    }
    if (isEnumType(type)) return type.getValues()[0].value;
    const hint = VALUE_HINTS[name];
    if (type.name === 'ID') {
      const id = this.source.id(idKind(name, field.name, field.returnType, this.kinds), this.ids.length);
      this.ids.push(id);
      return id;
    }
    if (hint) return hint(this.source);
    switch (type.name) {
      case 'String':
        return 'x';
      case 'Int':
        return 1;
      case 'Float':
        return 0.5;
      case 'Boolean':
        return true;
      case 'JSON':
        return { note: 'x' };
      case 'DateTime':
        return new Date().toISOString();
      case '_Any':
        throw new Error('_Any values are built by the entity probes themselves.');
      default:
        throw new Error(`No value for scalar ${type.name}; teach tests/faults/lib/operations.ts.`);
    }
  }

  /** `(a: $v1, b: $v2)` for the arguments this mode fills, or '' when none. */
  arguments(field: GraphQLField<unknown, unknown>): string {
    const returnType = getNamedType(field.type);
    const chosen = field.args.filter((arg) => isRequired(arg) || (this.mode === 'ids' && isIdInput(arg.type)));
    if (chosen.length === 0) return '';
    const parts = chosen.map((arg) => `${arg.name}: ${this.variable(arg.type, this.value(arg.type, arg.name, { name: field.name, returnType }))}`);
    return `(${parts.join(', ')})`;
  }

  /** Leaf fields of `type`, and its object fields down to `maxLevel` nested levels. */
  selection(type: GraphQLNamedType, level = 0): string {
    if (isUnionType(type)) {
      return ['__typename', ...type.getTypes().map((member) => `... on ${member.name} { ${this.selection(member, level)} }`)].join(' ');
    }
    if (!isObjectType(type)) return '';
    const parts: string[] = [];
    for (const field of Object.values(type.getFields())) {
      if (field.name.startsWith('__')) continue;
      const named = getNamedType(field.type);
      if (isLeafType(named)) parts.push(`${field.name}${this.arguments(field)}`);
      else if (level < this.maxLevel) parts.push(`${field.name}${this.arguments(field)} { ${this.selection(named, level + 1)} }`);
    }
    return parts.length > 0 ? parts.join(' ') : '__typename';
  }

  build(operationType: 'query' | 'mutation' | 'subscription', body: string): BuiltOperation {
    const definitions = this.definitions.length > 0 ? `(${this.definitions.join(', ')})` : '';
    return { query: `${operationType} Probe${definitions} { ${body} }`, variables: { ...this.variables }, ids: [...this.ids] };
  }

  /** A variable of a type named in the schema, filled by the caller (the `_Any` representations). */
  rawVariable(typeName: string, value: unknown): string {
    const name = `v${this.definitions.length + 1}`;
    this.definitions.push(`$${name}: ${typeName}`);
    this.variables[name] = value;
    return `$${name}`;
  }

  recordIds(ids: string[]): void {
    this.ids.push(...ids);
  }
}

export interface BuildOptions {
  mode: FillMode;
  /** Object types whose ids the source can give (User, Agent, Session...). */
  kinds: readonly string[];
  /**
   * Nested object levels selected below the root field's type: one level of objects is not enough
   * for connections, whose items sit two levels down (`edges { node }`), nor for a session's
   * messages (`messages { edges { node { content } } }`). @default 3
   */
  maxLevel?: number;
}

/** `query|mutation|subscription Probe(...) { field(args) { selection } }` for one root field. */
export function buildRootOperation(
  schema: GraphQLSchema,
  operationType: 'query' | 'mutation' | 'subscription',
  fieldName: string,
  source: ValueSource,
  options: BuildOptions,
): BuiltOperation {
  const root = operationType === 'query' ? schema.getQueryType() : operationType === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
  const field = root?.getFields()[fieldName];
  if (!field) throw new Error(`${operationType} has no field ${fieldName}`);
  const builder = new OperationBuilder(source, options.mode, options.kinds, options.maxLevel ?? 3);
  const args = builder.arguments(field);
  const named = getNamedType(field.type);
  const body = isLeafType(named) ? `${field.name}${args}` : `${field.name}${args} { ${builder.selection(named)} }`;
  return builder.build(operationType, body);
}

/**
 * `_entities(representations: [{ __typename: type, id }])` selecting `type`'s fields as the given
 * schema (a subgraph's, or the API schema, which must refuse it) defines them.
 */
export function buildEntitiesOperation(
  schema: GraphQLSchema,
  typeName: string,
  ids: string[],
  source: ValueSource,
  options: BuildOptions,
): BuiltOperation {
  const builder = new OperationBuilder(source, options.mode, options.kinds, options.maxLevel ?? 3);
  builder.recordIds(ids);
  const representations = builder.rawVariable('[_Any!]!', ids.map((id) => ({ __typename: typeName, id })));
  const type = schema.getType(typeName);
  // Against the API schema the type still exists (only `_entities` does not): select its id.
  const selection = type && isObjectType(type) ? builder.selection(type) : 'id';
  return builder.build('query', `_entities(representations: ${representations}) { __typename ... on ${typeName} { ${selection} } }`);
}

/** How many ID values an operation passes (to enumerate who owns each one). */
export function countIdSlots(build: (source: ValueSource) => BuiltOperation): number {
  let slots = 0;
  build({
    id: (_kind, slot) => {
      slots = Math.max(slots, slot + 1);
      return '00000000-0000-4000-8000-000000000000';
    },
    unique: () => 'count',
  });
  return slots;
}
