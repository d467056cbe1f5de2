import type { GraphQLDataSource, GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import type { GatewayGraphQLResponse } from '@apollo/server-gateway-interface';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';
import { appError } from '../lib/errors.js';
import { PRINCIPAL_HEADER, ProofCache, REQUEST_ID_HEADER, type Principal } from '../lib/principal.js';
import type { RouterContext } from './context.js';
import type { Fetcher, FetcherResponse } from '../lib/http-client.js';

const ROUTER_ITSELF: Principal = { kind: 'service', service: 'router', scopes: [] };

/** Errors a subgraph itself reported in a non-2xx GraphQL response: passed on (masked later), not replaced. */
const reportedBySubgraph = new WeakSet<object>();

type JsonObject = Record<string, unknown>;

/**
 * An entity fetch's representations with duplicates removed: the planner sends one per entity
 * position, so an entity reached along many paths (the same product under every review) is sent,
 * resolved, answered and parsed once instead of once per position.
 */
export interface DedupedRepresentations {
  /** The distinct representations, each already serialized. */
  json: string[];
  /** For each original position, the index of its representation in `json`. */
  positions: number[];
}

/** Deduplicates by serialized form; undefined when there is nothing to gain. */
export function dedupeRepresentations(representations: unknown): DedupedRepresentations | undefined {
  if (!Array.isArray(representations) || representations.length < 2) return undefined;
  const index = new Map<string, number>();
  const json: string[] = [];
  const positions = new Array<number>(representations.length);
  for (let i = 0; i < representations.length; i++) {
    const key = JSON.stringify(representations[i]);
    let at = index.get(key);
    if (at === undefined) {
      at = json.length;
      json.push(key);
      index.set(key, at);
    }
    positions[i] = at;
  }
  return json.length === representations.length ? undefined : { json, positions };
}

/** A deep copy of JSON data (plain objects, arrays, scalars). */
function cloneJson<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(cloneJson) as T;
  const copy: JsonObject = {};
  for (const key of Object.keys(value)) copy[key] = cloneJson((value as JsonObject)[key]);
  return copy as T;
}

/**
 * Puts a deduplicated answer back in the planner's shape: one entity per original position (a
 * copy for every repeat, since the gateway merges later fetches into these objects in place) and
 * each `_entities` error once per position it stands for.
 */
export function expandEntities(response: { data?: JsonObject | null; errors?: ReadonlyArray<GraphQLFormattedError> }, positions: readonly number[]): void {
  const entities = response.data?._entities;
  if (Array.isArray(entities)) {
    const used = new Array<boolean>(entities.length).fill(false);
    response.data!._entities = positions.map((at) => {
      if (!used[at]) {
        used[at] = true;
        return entities[at];
      }
      return cloneJson(entities[at]);
    });
  }
  if (!response.errors?.some((error) => error.path?.[0] === '_entities')) return;
  const originals = new Map<number, number[]>();
  positions.forEach((at, i) => originals.set(at, [...(originals.get(at) ?? []), i]));
  response.errors = response.errors.flatMap((error) => {
    const { path } = error;
    if (path?.[0] !== '_entities' || typeof path[1] !== 'number') return [error];
    return (originals.get(path[1]) ?? []).map((i) => ({ ...error, path: ['_entities', i, ...path.slice(2)] }));
  });
}

/** The request body, with deduplicated representations spliced in already serialized. */
function requestBody(request: GraphQLDataSourceProcessOptions['request'], deduped: DedupedRepresentations | undefined): string {
  const extensions = request.extensions ? `,"extensions":${JSON.stringify(request.extensions)}` : '';
  const operationName = request.operationName ? `,"operationName":${JSON.stringify(request.operationName)}` : '';
  let variables: string;
  if (deduped) {
    const { representations: _, ...others } = request.variables as JsonObject;
    const rest = JSON.stringify(others);
    variables = `{"representations":[${deduped.json.join(',')}]${rest === '{}' ? '}' : `,${rest.slice(1)}`}`;
  } else {
    variables = JSON.stringify(request.variables ?? {});
  }
  return `{"query":${JSON.stringify(request.query)},"variables":${variables}${operationName}${extensions}}`;
}

/** `max-age` and `private`/`public` of a Cache-Control header, as the gateway's own data source reads them. */
function cacheHint(header: string | null): { maxAge: number; scope?: 'PRIVATE' | 'PUBLIC' } {
  const hint: { maxAge: number; scope?: 'PRIVATE' | 'PUBLIC' } = { maxAge: 0 };
  for (const directive of header?.split(',') ?? []) {
    const [name, value] = directive.trim().toLowerCase().split('=');
    if (name === 'max-age' && value && /^[0-9]+$/.test(value)) hint.maxAge = Number(value);
    if (name === 'private') hint.scope = 'PRIVATE';
    if (name === 'public') hint.scope = 'PUBLIC';
  }
  return hint;
}

/**
 * Who a fetch is made for, as far as a subgraph can tell: two fetches with the same key and body
 * get the same answer. Scopes count (an API key may hold fewer than its user).
 */
function callerKey(principal: Principal | undefined): string {
  if (!principal) return 'router';
  switch (principal.kind) {
    case 'anonymous':
      return 'anonymous';
    case 'service':
      return `service:${principal.service}`;
    case 'user':
      return `user:${principal.userId}:${principal.scopes.join(',')}`;
    case 'api_key':
      return `api_key:${principal.apiKeyId}:${principal.userId}:${principal.scopes.join(',')}`;
  }
}

/** Queries only: a mutation (or anything that is not plainly a query) runs once per request. */
function isQuery(operation: string): boolean {
  const start = operation.trimStart();
  return start.startsWith('{') || /^query\b/.test(start);
}

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * One subgraph as the gateway sees it. Nothing from the client's request is forwarded: each fetch
 * carries only the router's signed statement of the principal and the request id.
 *
 * A lean GraphQLDataSource (the gateway's RemoteGraphQLDataSource builds node-fetch Request and
 * Headers objects on every fetch): JSON over the router's keep-alive client, with entity
 * representations deduplicated per fetch, and identical query fetches of one caller in flight at
 * the same time sent once (the subgraph then logs the first request's id for all of them).
 */
export class SubgraphDataSource implements GraphQLDataSource<Partial<RouterContext>> {
  /** Query fetches on their way, by caller and body: an identical one joins instead of going out again. */
  private readonly inFlight = new Map<string, Promise<FetcherResponse>>();

  /**
   * @param options.shareInFlight concurrent identical query fetches for the same caller share one
   *   request to the subgraph (each parses its own copy of the answer). @default true
   * @param options.observe told of every fetch: its subgraph, seconds and whether it succeeded.
   */
  constructor(
    readonly serviceName: string,
    readonly url: string,
    private readonly internalSecret: string,
    private readonly fetcher: Fetcher,
    private readonly log: Logger,
    private readonly options: { shareInFlight?: boolean; observe?: (subgraph: string, seconds: number, ok: boolean) => void } = {},
  ) {}

  /** The fetch, or the identical one already on its way for the same caller. */
  private send(body: string, headers: Record<string, string>, query: string, principal: Principal | undefined): Promise<FetcherResponse> {
    if (this.options.shareInFlight === false || !isQuery(query)) return this.fetcher(this.url, { method: 'POST', headers, body });
    const key = `${callerKey(principal)}\n${body}`;
    let pending = this.inFlight.get(key);
    if (!pending) {
      pending = this.fetcher(this.url, { method: 'POST', headers, body });
      this.inFlight.set(key, pending);
      const forget = () => this.inFlight.delete(key);
      pending.then(forget, forget);
    }
    return pending;
  }

  async process(options: GraphQLDataSourceProcessOptions<Partial<RouterContext>>): Promise<GatewayGraphQLResponse> {
    const { request, context } = options;
    if (!request.query) throw new Error('Missing query');
    const requestId = context.record?.requestId;
    // One proof per caller, renewed every 30 s (the request id travels in its own header).
    context.proof ??= ProofCache.for(this.internalSecret).proofFor(context.principal ?? ROUTER_ITSELF);
    const headers: Record<string, string> = { 'content-type': 'application/json', [PRINCIPAL_HEADER]: context.proof };
    if (requestId) headers[REQUEST_ID_HEADER] = requestId;
    const deduped = dedupeRepresentations(request.variables?.representations);

    let response: FetcherResponse | undefined;
    let body: unknown;
    const started = process.hrtime.bigint();
    try {
      response = await this.send(requestBody(request, deduped), headers, request.query, context.principal);
      if (!response.ok) throw await this.errorFromResponse(response);
      body = await response.json();
      if (!isObject(body)) throw new Error(`Expected JSON response body, but received: ${String(body).slice(0, 100)}`);
    } catch (error) {
      this.options.observe?.(this.serviceName, Number(process.hrtime.bigint() - started) / 1e9, false);
      this.fail(error, context);
    }
    this.options.observe?.(this.serviceName, Number(process.hrtime.bigint() - started) / 1e9, true);
    const result = body as GatewayGraphQLResponse & { data?: JsonObject | null };
    if (deduped) expandEntities(result, deduped.positions);

    // As the gateway's own data source does: the answer is no more cacheable than its least cacheable fetch.
    const overallCachePolicy = 'incomingRequestContext' in options ? options.incomingRequestContext.overallCachePolicy : undefined;
    if (overallCachePolicy && 'restrict' in overallCachePolicy) overallCachePolicy.restrict(cacheHint(response!.headers.get('cache-control')));
    return result;
  }

  /**
   * Subgraphs answer some GraphQL errors with a 4xx status (Apollo Server sets it from
   * `extensions.http`); their first error is what the client should see, not "400: Bad Request".
   * A 401 is different: the subgraph refused the router's own proof (INTERNAL_SECRET differs), which
   * the client can do nothing about, so it stays an outage.
   */
  private async errorFromResponse(response: FetcherResponse): Promise<GraphQLError> {
    if (response.status === 401) return new GraphQLError(`${this.serviceName} refused the router's principal proof: check INTERNAL_SECRET.`);
    const body = (await response.json().catch(() => undefined)) as { errors?: { message?: unknown; extensions?: unknown }[] } | undefined;
    const first = Array.isArray(body?.errors) ? body.errors[0] : undefined;
    if (first && typeof first.message === 'string') {
      const extensions = typeof first.extensions === 'object' && first.extensions !== null ? (first.extensions as Record<string, unknown>) : {};
      const error = new GraphQLError(first.message, { extensions: { code: extensions.code } });
      reportedBySubgraph.add(error);
      return error;
    }
    return new GraphQLError(`${response.status}: ${response.statusText}`);
  }

  /** A subgraph that is down, times out or answers garbage becomes one clean SERVICE_UNAVAILABLE. */
  private fail(error: unknown, context: Partial<RouterContext>): never {
    if (error instanceof Error && reportedBySubgraph.has(error)) throw error;
    this.log.error({ err: error, subgraph: this.serviceName, requestId: context.record?.requestId }, 'subgraph fetch failed');
    throw appError('SERVICE_UNAVAILABLE', `The ${this.serviceName} service is unavailable; try again shortly.`);
  }
}
