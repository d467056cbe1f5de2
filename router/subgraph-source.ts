import { RemoteGraphQLDataSource, type GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { appError } from '../lib/errors.js';
import { PRINCIPAL_HEADER, REQUEST_ID_HEADER, signPrincipalProof, type Principal } from '../lib/principal.js';
import type { RouterContext } from './context.js';

type Fetcher = RemoteGraphQLDataSource['fetcher'];
type FetcherResponse = Awaited<ReturnType<Fetcher>>;

const ROUTER_ITSELF: Principal = { kind: 'service', service: 'router', scopes: [] };

/** Errors a subgraph itself reported in a non-2xx GraphQL response: passed on (masked later), not replaced. */
const reportedBySubgraph = new WeakSet<object>();

/**
 * One subgraph as the gateway sees it. Nothing from the client's request is forwarded: each fetch
 * carries only the router's signed statement of the principal and the request id.
 */
export class SubgraphDataSource extends RemoteGraphQLDataSource<Partial<RouterContext>> {
  constructor(
    readonly serviceName: string,
    url: string,
    private readonly internalSecret: string,
    fetcher: Fetcher,
    private readonly log: Logger,
  ) {
    super({ url, fetcher });
  }

  override willSendRequest({ request, context }: GraphQLDataSourceProcessOptions<Partial<RouterContext>>): void {
    const headers = request.http!.headers;
    // The gateway starts from an empty header set; clearing it keeps that true whatever a future version does.
    for (const [name] of Array.from(headers)) if (name !== 'content-type') headers.delete(name);
    const requestId = context.record?.requestId;
    // Signed once per client request, however many fetches its plan makes.
    context.proof ??= signPrincipalProof(context.principal ?? ROUTER_ITSELF, this.internalSecret, requestId);
    headers.set(PRINCIPAL_HEADER, context.proof);
    if (requestId) headers.set(REQUEST_ID_HEADER, requestId);
  }

  /**
   * Subgraphs answer some GraphQL errors with a 4xx status (Apollo Server sets it from
   * `extensions.http`); their first error is what the client should see, not "400: Bad Request".
   * A 401 is different: the subgraph refused the router's own proof (INTERNAL_SECRET differs), which
   * the client can do nothing about, so it stays an outage.
   */
  override async errorFromResponse(response: FetcherResponse): Promise<GraphQLError> {
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
  override didEncounterError(error: Error, _request: unknown, _response?: FetcherResponse, context?: Partial<RouterContext>): never {
    if (reportedBySubgraph.has(error)) throw error;
    this.log.error({ err: error, subgraph: this.serviceName, requestId: context?.record?.requestId }, 'subgraph fetch failed');
    throw appError('SERVICE_UNAVAILABLE', `The ${this.serviceName} service is unavailable; try again shortly.`);
  }
}
