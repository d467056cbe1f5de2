import {
  GraphQLError,
  Kind,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLOutputType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';
import { appError } from '../lib/errors.js';

/**
 * Limits on the shape of one operation, checked after parsing and before planning, so that a
 * small request cannot make the router and the subgraphs do unbounded work. Pure functions: the
 * HTTP plugin uses them today, graphql-ws subscriptions can reuse them.
 */
export interface OperationLimits {
  /** Fields on the longest path, root field = 1 (fragments followed). @default 12 */
  maxDepth: number;
  /** Aliased fields, counted once per place a fragment is spread. @default 30 */
  maxAliases: number;
  /** Fields selected on the root type. @default 20 */
  maxRootFields: number;
  /** Lexical tokens in the document; enforced by the parser itself (`parse(..., { maxTokens })`). @default 2000 */
  maxTokens: number;
  /** Estimated cost, see {@link measureOperation}. @default 20000 */
  maxCost: number;
  /** Directive uses in the operation and the fragments it spreads. @default 50 */
  maxDirectives: number;
  /** Size assumed for a list field without a `first` argument. @default 20 */
  defaultListSize: number;
}

export const DEFAULT_OPERATION_LIMITS: OperationLimits = {
  maxDepth: 12,
  maxAliases: 30,
  maxRootFields: 20,
  maxTokens: 2000,
  maxCost: 20_000,
  maxDirectives: 50,
  defaultListSize: 20,
};

export interface OperationMeasure {
  depth: number;
  aliases: number;
  rootFields: number;
  /** Root field names (not aliases), fragments at the root expanded; `__typename` included. */
  rootFieldNames: string[];
  directives: number;
  cost: number;
  /** The cost read a `first` argument from a variable, so it must be measured again with other variables. */
  costUsesVariables: boolean;
}

interface Totals {
  depth: number;
  aliases: number;
  directives: number;
  cost: number;
}

/** Introspection is bounded by graphql-js's MaxIntrospectionDepthRule during validation, not by these limits. */
const INTROSPECTION_ROOTS = new Set(['__schema', '__type']);
const PAGE_SIZE_ARGUMENTS = new Set(['first', 'last']);

interface Walk {
  schema: GraphQLSchema | undefined;
  fragments: Map<string, FragmentDefinitionNode>;
  variables: Record<string, unknown>;
  variableDefaults: Map<string, ValueNode>;
  defaultListSize: number;
  /** Per fragment and page flag: fragments spread many times are measured once (no exponential walk). */
  memo: Map<string, Totals>;
  /** Fragments being measured: a spread of one of them is a cycle and counts for nothing. */
  active: Set<string>;
  usesVariables: boolean;
}

/**
 * Measures `operation` (one operation of `document`). Cost: every field costs 1; the selection
 * under a field is multiplied by the field's page size: its `first`/`last` argument (literal,
 * variable, or the schema's default), else — for list fields, known from the schema — the default
 * list size. The list directly inside a paginated field (`edges`, `nodes`) is that page, so it is
 * not multiplied again. Nested multipliers multiply. Without a schema only `first`/`last` count.
 */
export function measureOperation(
  document: DocumentNode,
  operation: OperationDefinitionNode,
  options: { schema?: GraphQLSchema; variables?: Record<string, unknown> | null; defaultListSize?: number } = {},
): OperationMeasure {
  const walk: Walk = {
    schema: options.schema,
    fragments: new Map(),
    variables: options.variables ?? {},
    variableDefaults: new Map(),
    defaultListSize: options.defaultListSize ?? DEFAULT_OPERATION_LIMITS.defaultListSize,
    memo: new Map(),
    active: new Set(),
    usesVariables: false,
  };
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) walk.fragments.set(definition.name.value, definition);
  }
  for (const variable of operation.variableDefinitions ?? []) {
    if (variable.defaultValue) walk.variableDefaults.set(variable.variable.name.value, variable.defaultValue);
  }
  const rootType = options.schema?.getRootType(operation.operation) ?? undefined;
  const rootFieldNames: string[] = [];
  collectRootFields(operation.selectionSet, walk, new Set(), rootFieldNames);
  const totals = measureSelectionSet(operation.selectionSet, rootType, false, walk, true);
  return {
    depth: totals.depth,
    aliases: totals.aliases,
    rootFields: rootFieldNames.length,
    rootFieldNames,
    directives: totals.directives + (operation.directives?.length ?? 0),
    cost: totals.cost,
    costUsesVariables: walk.usesVariables,
  };
}

function collectRootFields(selectionSet: SelectionSetNode, walk: Walk, seen: Set<string>, into: string[]): void {
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) into.push(selection.name.value);
    else if (selection.kind === Kind.INLINE_FRAGMENT) collectRootFields(selection.selectionSet, walk, seen, into);
    else {
      const fragment = walk.fragments.get(selection.name.value);
      if (!fragment || seen.has(fragment.name.value)) continue;
      seen.add(fragment.name.value);
      collectRootFields(fragment.selectionSet, walk, seen, into);
      seen.delete(fragment.name.value);
    }
  }
}

function measureSelectionSet(
  selectionSet: SelectionSetNode,
  parentType: GraphQLNamedType | undefined,
  isPage: boolean,
  walk: Walk,
  atRoot = false,
): Totals {
  const totals: Totals = { depth: 0, aliases: 0, directives: 0, cost: 0 };
  for (const selection of selectionSet.selections) {
    totals.directives += selection.directives?.length ?? 0;
    let inner: Totals;
    if (selection.kind === Kind.FIELD) {
      if (selection.alias) totals.aliases += 1;
      if (atRoot && INTROSPECTION_ROOTS.has(selection.name.value)) {
        totals.depth = Math.max(totals.depth, 1);
        totals.cost += 1;
        continue;
      }
      inner = measureField(selection, parentType, isPage, walk);
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      const type = selection.typeCondition ? walk.schema?.getType(selection.typeCondition.name.value) : parentType;
      inner = measureSelectionSet(selection.selectionSet, type ?? undefined, isPage, walk, atRoot);
    } else {
      const name = selection.name.value;
      const fragment = walk.fragments.get(name);
      if (!fragment || walk.active.has(name)) continue;
      const key = `${name}\u0000${isPage}\u0000${atRoot}`;
      let memoized = walk.memo.get(key);
      if (!memoized) {
        walk.active.add(name);
        const type = walk.schema?.getType(fragment.typeCondition.name.value) ?? undefined;
        memoized = measureSelectionSet(fragment.selectionSet, type, isPage, walk, atRoot);
        memoized.directives += fragment.directives?.length ?? 0;
        walk.active.delete(name);
        walk.memo.set(key, memoized);
      }
      inner = memoized;
    }
    totals.depth = Math.max(totals.depth, inner.depth);
    totals.aliases += inner.aliases;
    totals.directives += inner.directives;
    totals.cost += inner.cost;
  }
  return totals;
}

function measureField(field: FieldNode, parentType: GraphQLNamedType | undefined, isPage: boolean, walk: Walk): Totals {
  if (!field.selectionSet) return { depth: 1, aliases: 0, directives: 0, cost: 1 };
  const definition = fieldDefinition(parentType, field.name.value);
  const { multiplier, childIsPage } = pageSize(field, definition, isPage, walk);
  const child = measureSelectionSet(field.selectionSet, definition ? namedType(definition.type) : undefined, childIsPage, walk);
  return {
    depth: child.depth + 1,
    aliases: child.aliases,
    directives: child.directives,
    cost: 1 + multiplier * child.cost,
  };
}

/*
 * Schema types are inspected by shape, not with graphql's isObjectType/isListType: those use
 * instanceof, and the gateway (CommonJS) builds its schema with graphql's CommonJS build, which is
 * a different class from the ESM one wherever ESM resolution picks graphql's .mjs files (vitest).
 */
function fieldDefinition(parentType: GraphQLNamedType | undefined, name: string): GraphQLField<unknown, unknown> | undefined {
  if (!parentType || !('getFields' in parentType)) return undefined;
  const field = parentType.getFields()[name];
  return field && 'args' in field ? field : undefined;
}

function namedType(type: GraphQLOutputType): GraphQLNamedType {
  let named: GraphQLOutputType = type;
  while ('ofType' in named) named = named.ofType;
  return named;
}

/** `[T]` or `[T]!`: the schema language spelling of a type reference is what both builds agree on. */
function isListField(definition: GraphQLField<unknown, unknown>): boolean {
  return String(definition.type).startsWith('[');
}

function pageSize(
  field: FieldNode,
  definition: GraphQLField<unknown, unknown> | undefined,
  isPage: boolean,
  walk: Walk,
): { multiplier: number; childIsPage: boolean } {
  for (const argument of field.arguments ?? []) {
    if (!PAGE_SIZE_ARGUMENTS.has(argument.name.value)) continue;
    const size = intValue(argument.value, walk);
    if (size !== undefined) return { multiplier: size, childIsPage: true };
  }
  const declared = definition?.args.find((arg) => PAGE_SIZE_ARGUMENTS.has(arg.name));
  if (declared) {
    const fallback = typeof declared.defaultValue === 'number' ? declared.defaultValue : walk.defaultListSize;
    return { multiplier: Math.max(0, fallback), childIsPage: true };
  }
  if (definition && isListField(definition)) {
    return { multiplier: isPage ? 1 : walk.defaultListSize, childIsPage: false };
  }
  return { multiplier: 1, childIsPage: false };
}

function intValue(value: ValueNode, walk: Walk): number | undefined {
  if (value.kind === Kind.INT) return Math.max(0, Number(value.value));
  if (value.kind !== Kind.VARIABLE) return undefined;
  walk.usesVariables = true;
  const name = value.name.value;
  const given = walk.variables[name];
  if (typeof given === 'number' && Number.isFinite(given)) return Math.max(0, Math.trunc(given));
  const fallback = walk.variableDefaults.get(name);
  return fallback ? intValue(fallback, walk) : undefined;
}

function tooComplex(message: string): GraphQLError {
  return appError('OPERATION_TOO_COMPLEX', message);
}

/** The first limit `measure` breaks, as the error to send (HTTP 400, OPERATION_TOO_COMPLEX), or undefined. */
export function checkOperationLimits(measure: OperationMeasure, limits: OperationLimits): GraphQLError | undefined {
  if (measure.depth > limits.maxDepth) return tooComplex(`Query depth ${measure.depth} exceeds the limit of ${limits.maxDepth}.`);
  if (measure.aliases > limits.maxAliases) return tooComplex(`Alias count ${measure.aliases} exceeds the limit of ${limits.maxAliases}.`);
  if (measure.rootFields > limits.maxRootFields) {
    return tooComplex(`Root field count ${measure.rootFields} exceeds the limit of ${limits.maxRootFields}.`);
  }
  if (measure.directives > limits.maxDirectives) {
    return tooComplex(`Directive count ${measure.directives} exceeds the limit of ${limits.maxDirectives}.`);
  }
  if (measure.cost > limits.maxCost) {
    const cost = Number.isSafeInteger(measure.cost) ? String(measure.cost) : 'above 2^53';
    return tooComplex(`Query cost ${cost} exceeds the limit of ${limits.maxCost}.`);
  }
  return undefined;
}

/** graphql-js aborts parsing past `maxTokens` with this syntax error (16.x spells it "more that"). */
const TOKEN_LIMIT_MESSAGE = /Document contains more tha[nt] \d+ tokens/;

/** The OPERATION_TOO_COMPLEX error to send instead of graphql-js's token-limit syntax error, or undefined for any other error. */
export function tokenLimitError(error: GraphQLError, limits: Pick<OperationLimits, 'maxTokens'>): GraphQLError | undefined {
  if (!TOKEN_LIMIT_MESSAGE.test(error.message)) return undefined;
  return tooComplex(`Query token count exceeds the limit of ${limits.maxTokens}.`);
}
