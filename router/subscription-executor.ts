import {
  GraphQLError,
  Kind,
  buildSchema,
  execute,
  printSchema,
  getArgumentValues,
  getOperationAST,
  getVariableValues,
  parse,
  responsePathAsArray,
  validate,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type FieldNode,
  type FormattedExecutionResult,
  type GraphQLField,
  type GraphQLFieldResolver,
  type GraphQLFormattedError,
  type GraphQLResolveInfo,
  type GraphQLSchema,
  type GraphQLTypeResolver,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import type { Logger } from 'pino';
import { appError, type ErrorCode } from '../lib/errors.js';
import { isUuid } from '../lib/ids.js';
import type { Principal } from '../lib/principal.js';
import { FINAL_EVENT_TYPES, TaskEventStreamError, type TaskEvent, type TaskEventLog } from '../lib/task-events/types.js';
import { checkOperationLimits, measureOperation, tokenLimitError, type OperationLimits, type OperationMeasure } from './operation-limits.js';
import { SharedFetches, type SharedEntry } from './shared-fetches.js';
import { buildTaskQuery, type TaskQuery } from './task-selection.js';

/**
 * Runs `Subscription.taskEvents` for the router's graphql-ws server: the gateway plans queries and
 * mutations only, so the router checks subscription operations itself (same parser limits,
 * validation against the gateway's API schema, same operation limits as HTTP), authorizes them
 * through the gateway as the subscriber, and executes every event of the task event log with
 * graphql-js against the API schema, as `subscribe()` would. `TaskEvent.task`, owned by every
 * subgraph, is fetched through the gateway as the subscriber once per task state (first event,
 * STARTED, final event) and reused for every token.
 */

type PromiseOrValue<T> = T | Promise<T>;

/** One query through the gateway's ordinary path (Apollo Server, policy plugin, query planner). */
export interface GatewayRequest {
  query: string;
  operationName: string;
  variables: Record<string, unknown>;
}

/** Who a gateway fetch runs as, and the ids its logs carry. */
export interface Caller {
  principal: Principal;
  requestId: string;
  clientIp: string;
}

/** Executes a query through the gateway as `caller`; errors come back formatted (masked) as for HTTP. */
export type GatewayQuery = (request: GatewayRequest, caller: Caller) => Promise<FormattedExecutionResult<Record<string, unknown>>>;

/** The subscription message payload, as graphql-ws checked it. */
export interface SubscriptionPayload {
  query: string;
  operationName?: string | null;
  variables?: Record<string, unknown> | null;
}

export interface SubscriptionExecutorOptions {
  eventLog: TaskEventLog;
  gateway: GatewayQuery;
  limits: OperationLimits;
  log: Logger;
  /** Drop "Did you mean …?" hints from validation errors (when introspection is off). @default false */
  hideSchemaDetails?: boolean;
  /** How long a failed `task` fetch is reused before a later event retries it. @default 1000 */
  retryFailedFetchMs?: number;
}

/** A subscription that passed every check: what graphql-ws executes, and its context. */
export interface StartedSubscription {
  args: ExecutionArgs;
  subscription: TaskSubscription;
}

const ROOT_FIELD = 'taskEvents';
const FINISHED_STATUSES: ReadonlySet<string> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
const STATE_EVENT_TYPES: ReadonlySet<string> = new Set(['STARTED', ...FINAL_EVENT_TYPES]);

const AUTHORIZATION_QUERY = 'query TaskEventAuthorization($id: ID!) { task(id: $id) { id status } }';
const ARCHIVE_QUERY =
  'query TaskEventArchive($id: ID!, $after: Int!) { task(id: $id) { events(afterSequence: $after) { sequence type delta attempt at } } }';

/** Documents checked once per distinct query text (subscribers of a frontend all send the same one). */
const MAX_CACHED_DOCUMENTS = 500;
const MAX_CACHED_QUERY_LENGTH = 10_000;

interface CheckedDocument {
  document?: DocumentNode;
  /** Parse or validation errors, already carrying their `extensions.code`. */
  errors?: readonly GraphQLError[];
  /** Limits measured per operation when the cost does not depend on variables. */
  measures: WeakMap<OperationDefinitionNode, OperationMeasure>;
}

interface Authorization {
  status?: string;
  error?: GraphQLError;
}

/** What the gateway answered for a task's fields at one state, keyed like the client's response. */
interface TaskFetch {
  data: Record<string, unknown> | null | undefined;
  errors: readonly GraphQLFormattedError[] | undefined;
}

/** One response key of `TaskEvent.task` in one subscription: its query and the fetch it holds. */
interface TaskSlot {
  request: TaskQuery;
  /** Key of the shared fetch: principal, task, state, query and variables. */
  baseKey: string;
  entry?: SharedEntry<TaskFetch>;
  stateKey: string;
}

let privateStates = 0;

/** The contextValue of one running subscription: who, which task, how far, and its `task` fetches. */
export class TaskSubscription {
  readonly startedAt = Date.now();
  eventsSent = 0;
  /** Set when the stream ended on its own (after the final event, or a finished replay). */
  completed = false;
  /** Set when the subscription ended with an error (its code). */
  errorCode?: string;
  /** What graphql-ws iterates; created with the subscription, reading the log from its first `next()`. */
  results!: TaskResultStream;
  /**
   * Which task state the events have reached: the sequence of the last STARTED or final event seen.
   * Subscribers that replay from the first event see every state change, so their states are
   * comparable and their fetches and results can be shared; one resuming mid-way has not seen
   * them, so its first state is its own.
   */
  stateKey: string;
  private slots: Map<string, TaskSlot> | undefined;
  private closed = false;

  constructor(
    readonly id: string,
    readonly taskId: string,
    readonly afterSequence: number,
    readonly caller: Caller,
    /** Subscribers whose results for an event are the same as this one's. */
    readonly group: ResultGroup,
    private readonly executor: SubscriptionExecutor,
  ) {
    this.stateKey = afterSequence === 0 ? 's0' : `p${++privateStates}`;
  }

  /** Called for every event before it is executed. */
  observe(event: TaskEvent): void {
    if (STATE_EVENT_TYPES.has(event.type)) this.stateKey = `s${event.sequence}`;
  }

  /** `TaskEvent.task` for the event being executed: the fetch of this state, shared when possible. */
  task(info: GraphQLResolveInfo): unknown {
    const key = info.path.key as string;
    let slot = this.slots?.get(key);
    if (!slot) {
      const request = buildTaskQuery({
        fieldNodes: info.fieldNodes,
        responseKey: key,
        operation: info.operation,
        fragments: info.fragments,
        variableValues: info.variableValues,
        addTypename: this.executor.hasAbstractTypes,
      });
      request.variables[request.idVariable] = this.taskId;
      const baseKey = `${principalKey(this.caller.principal)}\n${this.taskId}\n${request.query}\n${JSON.stringify(request.variables)}`;
      slot = { request, baseKey, stateKey: '' };
      (this.slots ??= new Map()).set(key, slot);
    }
    let entry = slot.entry;
    if (!entry || slot.stateKey !== this.stateKey || this.executor.shouldRetry(entry)) {
      const held = entry;
      slot.stateKey = this.stateKey;
      slot.entry = entry = this.executor.fetchTask(`${slot.stateKey}\n${slot.baseKey}`, slot.request, this.caller);
      if (held) this.executor.releaseTask(held);
    }
    // Once settled, tokens are resolved synchronously from the cached JSON.
    return entry.settled ? pickTask(entry.value!, key) : entry.promise.then((fetched) => pickTask(fetched, key));
  }

  /**
   * A field below `task` whose JSON value is null: the gateway's error at that path (or below it,
   * when it nulled a parent of a non-null field) if there is one, else null.
   */
  nullAt(info: GraphQLResolveInfo): null {
    const full = responsePathAsArray(info.path);
    const errors = this.slots?.get(full[1] as string)?.entry?.value?.errors;
    if (!errors?.length) return null;
    const error = errorUnder(errors, full.slice(1));
    if (error) throw error;
    return null;
  }

  /** Releases the fetches and the result group this subscription holds. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.executor.releaseGroup(this.group);
    if (!this.slots) return;
    for (const slot of this.slots.values()) if (slot.entry) this.executor.releaseTask(slot.entry);
    this.slots = undefined;
  }
}

function pickTask(fetched: TaskFetch, key: string): unknown {
  const task = fetched.data?.[key];
  if (task !== null && task !== undefined) return task;
  const errors = fetched.errors ?? [];
  // A request-level error (no path) is why there is no data at all.
  const error = errorUnder(errors, [key]) ?? errors.find((candidate) => !candidate.path);
  if (error) throw error instanceof GraphQLError ? error : fromFormatted(error);
  // The task was readable when the subscription started; it is not now.
  throw appError('NOT_FOUND', 'Task not found.');
}

/** The gateway's error at `path` or below it (it nulls the nearest nullable parent of a failed field). */
function errorUnder(errors: readonly GraphQLFormattedError[], path: readonly (string | number)[]): GraphQLError | undefined {
  const match = errors.find((error) => error.path && path.every((part, i) => error.path![i] === part));
  return match && fromFormatted(match);
}

/** A formatted (already masked) error from the gateway, as an error to throw again. */
function fromFormatted(error: GraphQLFormattedError): GraphQLError {
  const code = typeof error.extensions?.code === 'string' ? error.extensions.code : 'INTERNAL_SERVER_ERROR';
  return new GraphQLError(error.message, { extensions: { code } });
}

function principalKey(principal: Principal): string {
  switch (principal.kind) {
    case 'user':
      return `user:${principal.userId}`;
    case 'api_key':
      // Scopes decide what an API key sees, so they are part of what may be shared.
      return `key:${principal.apiKeyId}:${principal.scopes.join(',')}`;
    case 'service':
      return `service:${principal.service}`;
    case 'anonymous':
      return 'anonymous';
  }
}

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * The subscribers of one task with the same operation, variables and principal: for a given event
 * and task state they get the same result, so the first of them to reach an event executes it and
 * the others reuse that result (the log hands every subscriber of a task the same event object).
 */
interface ResultGroup {
  key: string;
  refs: number;
  event?: TaskEvent;
  stateKey?: string;
  result?: PromiseOrValue<ExecutionResult>;
}

const isPromise = <T>(value: PromiseOrValue<T>): value is Promise<T> => typeof (value as { then?: unknown } | null)?.then === 'function';

/**
 * What graphql-ws iterates for one subscription: the task's events, each executed against the
 * subscription's operation. Written by hand rather than as an async generator over graphql-js
 * `subscribe()`: graphql-ws calls `return()` when the client completes or the socket closes, which
 * a generator would queue behind its pending `next()` (a live stream may wait for minutes), and
 * each layer of async iteration adds promises to the chain every waiting subscriber keeps alive.
 */
export class TaskResultStream implements AsyncIterableIterator<ExecutionResult> {
  private inner: AsyncIterator<TaskEvent> | undefined;
  private finished = false;
  // Bound once per stream rather than arrow-function fields: tsx (keepNames) gives every named
  // arrow a `name` property, which costs each of the 10,000s of streams a dictionary of its own.
  private readonly onEvent: (step: IteratorResult<TaskEvent>) => PromiseOrValue<IteratorResult<ExecutionResult>>;
  private readonly onError: (error: unknown) => IteratorResult<ExecutionResult>;

  constructor(
    private readonly subscription: TaskSubscription,
    private readonly args: ExecutionArgs,
    /** Opens the events (a replay, a live stream); its `return()` ends it, even while a `next()` waits. */
    private readonly open: () => Promise<AsyncIterator<TaskEvent>>,
    private readonly log: Logger,
  ) {
    this.onEvent = this.handleEvent.bind(this);
    this.onError = this.handleError.bind(this);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<ExecutionResult>> {
    if (this.finished) return Promise.resolve(DONE);
    if (this.inner) return this.inner.next().then(this.onEvent, this.onError);
    return this.open().then((inner) => {
      this.inner = inner;
      if (this.finished) {
        inner.return?.().catch(() => undefined);
        return DONE;
      }
      return inner.next().then(this.onEvent, this.onError);
    }, this.onError);
  }

  return(): Promise<IteratorResult<ExecutionResult>> {
    this.finish();
    return Promise.resolve(DONE);
  }

  private handleEvent(step: IteratorResult<TaskEvent>): PromiseOrValue<IteratorResult<ExecutionResult>> {
    if (this.finished) return DONE;
    if (step.done) {
      this.subscription.completed = true;
      this.finish();
      return DONE;
    }
    const event = step.value;
    this.subscription.observe(event);
    if (FINAL_EVENT_TYPES.has(event.type)) {
      // The final event is the last: the next pull completes without waiting on the log.
      this.subscription.completed = true;
      this.finish();
    }
    const result = this.execute(event);
    return isPromise(result) ? result.then((value) => ({ done: false, value })) : { done: false, value: result };
  }

  private handleError(error: unknown): IteratorResult<ExecutionResult> {
    // A stream already returned (client or socket gone) may still fail; nobody listens any more.
    if (this.finished) return DONE;
    this.finish();
    throw this.streamError(error);
  }

  private execute(event: TaskEvent): PromiseOrValue<ExecutionResult> {
    const { group, stateKey } = this.subscription;
    if (group.event === event && group.stateKey === stateKey) return group.result!;
    const result = execute({ ...this.args, rootValue: event });
    group.event = event;
    group.stateKey = stateKey;
    group.result = result;
    return result;
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.inner?.return?.().catch(() => undefined);
  }

  private streamError(error: unknown): GraphQLError {
    if (error instanceof GraphQLError) return error;
    if (error instanceof TaskEventStreamError && error.code === 'SLOW_CONSUMER') {
      return appError('SERVICE_UNAVAILABLE', 'This subscription fell too far behind the task\'s events and was stopped; subscribe again with afterSequence set to the last sequence received.');
    }
    if (error instanceof TaskEventStreamError && error.code === 'CLOSED') {
      return appError('SERVICE_UNAVAILABLE', 'The router is shutting down; subscribe again with afterSequence set to the last sequence received.');
    }
    const { id, taskId, afterSequence } = this.subscription;
    this.log.error({ err: error, subscriptionId: id, taskId, afterSequence }, 'task event stream failed');
    return appError('SERVICE_UNAVAILABLE', 'The task\'s events cannot be read right now; subscribe again with afterSequence set to the last sequence received.');
  }
}

/** An iterator over events already read (a finished task's rest). */
function iterate(events: readonly TaskEvent[]): AsyncIterator<TaskEvent> {
  let next = 0;
  return {
    next: () => Promise.resolve(next < events.length ? { done: false, value: events[next++] } : DONE),
    return: () => {
      next = events.length;
      return Promise.resolve(DONE);
    },
  };
}

/**
 * graphql-js resolves every field through this one function (the API schema has no resolvers of
 * its own): the root field is the event itself, the event's fields come from the log, `task` from
 * the gateway, and everything below `task` from the gateway's JSON by response key (alias or name).
 */
const resolveField: GraphQLFieldResolver<unknown, TaskSubscription> = (source, _args, subscription, info) => {
  const parent = info.path.prev;
  if (parent === undefined) return source;
  if (parent.prev === undefined) {
    return info.fieldName === 'task' ? subscription.task(info) : (source as Record<string, unknown>)[info.fieldName];
  }
  const value = (source as Record<string, unknown>)[info.path.key as string];
  return value === null || value === undefined ? subscription.nullAt(info) : value;
};

/** Abstract types below `task` are resolved from the `__typename` the forwarded query asks for. */
const resolveType: GraphQLTypeResolver<unknown, TaskSubscription> = (value) => (value as { __typename?: string }).__typename;

function withCode(error: GraphQLError, code: ErrorCode, hideSchemaDetails: boolean): GraphQLError {
  const message = hideSchemaDetails ? error.message.replace(/ ?Did you mean(.+?)\?$/, '') : error.message;
  return new GraphQLError(message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: { ...error.extensions, code },
  });
}

interface RootSelection {
  /** The first root field. */
  field?: FieldNode;
  /** Some root selection carries @skip or @include. */
  conditional: boolean;
}

/** Walks the root-level selections of an operation (following fragments, each once). */
function rootSelections(selectionSet: SelectionSetNode, document: DocumentNode, into: RootSelection, seen: Set<string>): void {
  for (const selection of selectionSet.selections) {
    if (selection.directives?.some((directive) => directive.name.value === 'skip' || directive.name.value === 'include')) into.conditional = true;
    if (selection.kind === Kind.FIELD) {
      into.field ??= selection;
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      rootSelections(selection.selectionSet, document, into, seen);
    } else if (!seen.has(selection.name.value)) {
      seen.add(selection.name.value);
      const fragment = document.definitions.find((definition) => definition.kind === Kind.FRAGMENT_DEFINITION && definition.name.value === selection.name.value);
      if (fragment && fragment.kind === Kind.FRAGMENT_DEFINITION) rootSelections(fragment.selectionSet, document, into, seen);
    }
  }
}

export class SubscriptionExecutor {
  /** True when the API schema has interfaces or unions (their values need `__typename`). */
  hasAbstractTypes = false;
  private schema: GraphQLSchema | undefined;
  private rootField: GraphQLField<unknown, unknown> | undefined;
  private readonly documents = new Map<string, CheckedDocument>();
  private readonly groups = new Map<string, ResultGroup>();
  private readonly fetches: SharedFetches<TaskFetch>;
  /** Authorizations of the same principal and task made at the same moment share one gateway call. */
  private readonly authorizations = new SharedFetches<Authorization>();
  private readonly retryMs: number;

  constructor(private readonly options: SubscriptionExecutorOptions) {
    this.retryMs = options.retryFailedFetchMs ?? 1000;
    this.fetches = new SharedFetches<TaskFetch>();
  }

  /**
   * The gateway's API schema, at start and on every supergraph update. Rebuilt from its SDL: the
   * gateway puts its own resolvers on the schema it serves (aliases read from the subgraphs'
   * answers), and a field's own resolver would win over the ones subscriptions execute with.
   */
  setSchema(apiSchema: GraphQLSchema): void {
    const schema = buildSchema(printSchema(apiSchema));
    this.schema = schema;
    this.documents.clear();
    this.rootField = schema.getSubscriptionType()?.getFields()[ROOT_FIELD];
    this.hasAbstractTypes = Object.values(schema.getTypeMap()).some((type) => !type.name.startsWith('__') && 'resolveType' in type);
  }

  /** Gateway fetches in the shared cache and result groups (for tests and metrics). */
  get shared(): { fetches: number; groups: number } {
    return { fetches: this.fetches.size, groups: this.groups.size };
  }

  /**
   * Checks and authorizes one subscribe message. Returns what graphql-ws executes, or the errors to
   * send for this subscription id; never throws.
   */
  async start(id: string, payload: SubscriptionPayload, caller: Caller): Promise<StartedSubscription | readonly GraphQLError[]> {
    try {
      return await this.prepare(id, payload, caller);
    } catch (error) {
      if (error instanceof GraphQLError && typeof error.extensions.code === 'string') return [error];
      this.options.log.error({ err: error, subscriptionId: id, requestId: caller.requestId }, 'subscription failed to start');
      return [appError('INTERNAL_SERVER_ERROR', 'Internal server error.')];
    }
  }

  private async prepare(id: string, payload: SubscriptionPayload, caller: Caller): Promise<StartedSubscription | readonly GraphQLError[]> {
    const schema = this.schema;
    const fieldDefinition = this.rootField;
    if (!schema) return [appError('SERVICE_UNAVAILABLE', 'The router has not loaded its schema yet; try again shortly.')];
    if (!fieldDefinition) return [appError('BAD_REQUEST', 'This supergraph has no Subscription.taskEvents.')];

    const checked = this.check(payload.query);
    if (!checked.document) return checked.errors!;
    const document = checked.document;
    const operation = getOperationAST(document, payload.operationName ?? undefined);
    if (!operation) {
      const message = payload.operationName ? `Unknown operation named "${payload.operationName}".` : 'Must provide operation name if query contains multiple operations.';
      return [appError('OPERATION_RESOLUTION_FAILURE', message)];
    }
    if (operation.operation !== 'subscription') {
      return [appError('BAD_REQUEST', `Only subscriptions are served over WebSocket; send ${operation.operation === 'query' ? 'queries' : 'mutations'} with HTTP POST to /graphql.`)];
    }
    if (checked.errors) return checked.errors;

    const variables = payload.variables ?? {};
    let measure = checked.measures.get(operation);
    if (!measure) {
      measure = measureOperation(document, operation, { schema, variables, defaultListSize: this.options.limits.defaultListSize });
      if (!measure.costUsesVariables) checked.measures.set(operation, measure);
    }
    const tooComplex = checkOperationLimits(measure, this.options.limits);
    if (tooComplex) return [tooComplex];
    if (measure.rootFieldNames.length !== 1 || measure.rootFieldNames[0] !== ROOT_FIELD) {
      return [appError('BAD_REQUEST', 'Only Subscription.taskEvents is served over WebSocket.')];
    }
    const root: RootSelection = { conditional: false };
    rootSelections(operation.selectionSet, document, root, new Set());
    if (!root.field) return [appError('BAD_REQUEST', 'Only Subscription.taskEvents is served over WebSocket.')];

    const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variables, { maxErrors: 20 });
    if (coerced.errors) return coerced.errors.map((error) => withCode(error, 'BAD_USER_INPUT', false));
    let argumentValues: { taskId?: unknown; afterSequence?: unknown };
    try {
      argumentValues = getArgumentValues(fieldDefinition, root.field, coerced.coerced);
    } catch (error) {
      if (error instanceof GraphQLError) return [withCode(error, 'BAD_USER_INPUT', false)];
      throw error;
    }
    const afterSequence = typeof argumentValues.afterSequence === 'number' ? argumentValues.afterSequence : 0;
    if (afterSequence < 0) return [appError('BAD_USER_INPUT', '"afterSequence" must be 0 or more.', { field: 'afterSequence' })];
    // An id that is not a UUID names no task: the same answer as someone else's task.
    if (!isUuid(argumentValues.taskId)) return [appError('NOT_FOUND', 'Task not found.')];
    const taskId = argumentValues.taskId.toLowerCase();

    const authorization = await this.authorize(taskId, caller);
    if (authorization.error) return [authorization.error];

    const groupKey = `${principalKey(caller.principal)}\n${taskId}\n${payload.operationName ?? ''}\n${payload.query}\n${JSON.stringify(variables)}`;
    const subscription = new TaskSubscription(id, taskId, afterSequence, caller, this.acquireGroup(groupKey), this);
    const finished = FINISHED_STATUSES.has(authorization.status ?? '');
    const args: ExecutionArgs = {
      schema,
      document,
      operationName: payload.operationName ?? undefined,
      variableValues: variables,
      contextValue: subscription,
      fieldResolver: resolveField,
      typeResolver: resolveType,
    };
    subscription.results = new TaskResultStream(subscription, args, () => this.openEvents(subscription, finished), this.options.log);
    return { subscription, args };
  }

  /**
   * graphql-ws's `subscribe`: the stream prepared by {@link start} (graphql-js `subscribe()` would
   * add a layer of async iteration per subscriber and execute every event once per subscriber).
   */
  subscribe(args: ExecutionArgs): AsyncIterableIterator<ExecutionResult> | ExecutionResult {
    if (args.contextValue instanceof TaskSubscription) return args.contextValue.results;
    return { errors: [appError('INTERNAL_SERVER_ERROR', 'Internal server error.')] };
  }

  private acquireGroup(key: string): ResultGroup {
    let group = this.groups.get(key);
    if (!group) this.groups.set(key, (group = { key, refs: 0 }));
    group.refs += 1;
    return group;
  }

  releaseGroup(group: ResultGroup): void {
    group.refs -= 1;
    if (group.refs <= 0 && this.groups.get(group.key) === group) this.groups.delete(group.key);
  }

  /** Parses and validates a query once per distinct text; errors carry their codes. */
  private check(query: string): CheckedDocument {
    const cached = this.documents.get(query);
    if (cached) {
      // Refreshed on use: the map's order is least recently used first.
      this.documents.delete(query);
      this.documents.set(query, cached);
      return cached;
    }
    const checked: CheckedDocument = { measures: new WeakMap() };
    try {
      checked.document = parse(query, { maxTokens: this.options.limits.maxTokens });
    } catch (error) {
      if (!(error instanceof GraphQLError)) throw error;
      checked.errors = [tokenLimitError(error, this.options.limits) ?? withCode(error, 'GRAPHQL_PARSE_FAILED', false)];
    }
    if (checked.document) checked.errors = this.validate(checked.document);
    if (query.length <= MAX_CACHED_QUERY_LENGTH) {
      if (this.documents.size >= MAX_CACHED_DOCUMENTS) this.documents.delete(this.documents.keys().next().value!);
      this.documents.set(query, checked);
    }
    return checked;
  }

  private validate(document: DocumentNode): readonly GraphQLError[] | undefined {
    // Checked first: graphql-js's own subscription rule evaluates root directives and throws when
    // their variables are not known yet.
    for (const definition of document.definitions) {
      if (definition.kind !== Kind.OPERATION_DEFINITION || definition.operation !== 'subscription') continue;
      const root: RootSelection = { conditional: false };
      rootSelections(definition.selectionSet, document, root, new Set());
      if (root.conditional) return [appError('BAD_REQUEST', 'The root field of a subscription cannot be conditional (@skip or @include).')];
    }
    let errors: readonly GraphQLError[];
    try {
      errors = validate(this.schema!, document);
    } catch (error) {
      if (!(error instanceof GraphQLError)) throw error;
      errors = [error];
    }
    if (errors.length === 0) return undefined;
    return errors.map((error) => withCode(error, 'GRAPHQL_VALIDATION_FAILED', this.options.hideSchemaDetails ?? false));
  }

  /** The task as the subscriber sees it through the gateway: NOT_FOUND unless it is theirs. */
  private async authorize(taskId: string, caller: Caller): Promise<Authorization> {
    const entry = this.authorizations.acquire(`${principalKey(caller.principal)}\n${taskId}`, async () => {
      try {
        const result = await this.options.gateway({ query: AUTHORIZATION_QUERY, operationName: 'TaskEventAuthorization', variables: { id: taskId } }, caller);
        const task = result.data?.task as { status?: string } | null | undefined;
        if (task) return { status: task.status };
        if (result.errors?.length) return { error: fromFormatted(result.errors[0]) };
        return { error: appError('NOT_FOUND', 'Task not found.') };
      } catch (error) {
        this.options.log.error({ err: error, requestId: caller.requestId }, 'subscription authorization failed');
        return { error: appError('SERVICE_UNAVAILABLE', 'The task cannot be checked right now; try again shortly.') };
      }
    });
    try {
      return await entry.promise;
    } finally {
      this.authorizations.release(entry);
    }
  }

  /**
   * The events to stream. A finished task's remaining events are read once (from the live log, or,
   * once that has expired, from the task service's archive through the gateway); an unfinished
   * task's are replayed and followed live until the final event.
   */
  private async openEvents(subscription: TaskSubscription, finished: boolean): Promise<AsyncIterator<TaskEvent>> {
    const { taskId, afterSequence } = subscription;
    const log = this.options.eventLog;
    if (finished) {
      const events = await log.read(taskId, afterSequence);
      if (events.some((event) => FINAL_EVENT_TYPES.has(event.type))) return iterate(events);
      // The worker commits the task's status before it appends the final event: a subscriber that
      // comes in between finds the live log without it, and follows the log until it arrives (the
      // stream also ends at once when the client already holds the final event).
      if (events.length > 0 || (await log.lastSequence(taskId)) > 0) return log.stream(taskId, afterSequence)[Symbol.asyncIterator]();
      return iterate(await this.archivedEvents(subscription));
    }
    // A client that already has the final event (the task's status may lag behind it for a
    // moment), or asks for a position past the end, gets a stream that completes once the log has
    // ended rather than one that waits forever.
    return log.stream(taskId, afterSequence)[Symbol.asyncIterator]();
  }

  private async archivedEvents(subscription: TaskSubscription): Promise<TaskEvent[]> {
    const { taskId, afterSequence, caller } = subscription;
    let result: FormattedExecutionResult<Record<string, unknown>>;
    try {
      result = await this.options.gateway({ query: ARCHIVE_QUERY, operationName: 'TaskEventArchive', variables: { id: taskId, after: afterSequence } }, caller);
    } catch (error) {
      this.options.log.error({ err: error, requestId: caller.requestId }, 'archived task events unavailable');
      throw appError('SERVICE_UNAVAILABLE', 'The task\'s events cannot be read right now; try again shortly.');
    }
    const task = result.data?.task as { events?: Omit<TaskEvent, 'taskId'>[] } | null | undefined;
    if (!task?.events) throw result.errors?.length ? fromFormatted(result.errors[0]) : appError('NOT_FOUND', 'Task not found.');
    return task.events.map((event) => ({ taskId, ...event }));
  }

  /** The shared fetch of a task's fields for one state (see {@link TaskSubscription.task}). */
  fetchTask(key: string, request: TaskQuery, caller: Caller): SharedEntry<TaskFetch> {
    return this.fetches.acquire(
      key,
      async () => {
        try {
          const result = await this.options.gateway(request, caller);
          return { data: result.data, errors: result.errors };
        } catch (error) {
          this.options.log.error({ err: error, requestId: caller.requestId }, 'task fetch for a subscription failed');
          return { data: null, errors: [{ message: 'The task cannot be read right now; try again shortly.', extensions: { code: 'SERVICE_UNAVAILABLE' } }] };
        }
      },
      (entry) => this.shouldRetry(entry),
    );
  }

  releaseTask(entry: SharedEntry<TaskFetch>): void {
    this.fetches.release(entry);
  }

  /** A failed fetch is retried by the first event after `retryFailedFetchMs`, not by every token. */
  shouldRetry(entry: SharedEntry<TaskFetch>): boolean {
    return entry.settled && entry.value!.errors !== undefined && entry.value!.errors.length > 0 && Date.now() - entry.settledAt >= this.retryMs;
  }

  close(): void {
    this.fetches.close();
    this.authorizations.close();
  }
}
