import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginInlineTraceDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { buildSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import type { DocumentNode } from 'graphql';
import type { Logger } from 'pino';
import { maskError } from './errors.js';
import { answerProbe, createRequestServer, executeGraphQL, headerValue, readJsonBody, RequestError, sendGraphQLError, splitUrl } from './graphql-http.js';
import { listen } from './http.js';
import { answerMetrics, outcomeLabel, ServiceMetrics } from './metrics.js';
import { PRINCIPAL_HEADER, REQUEST_ID_HEADER, verifyPrincipalProof, type Principal } from './principal.js';

/** What every subgraph resolver gets; each subgraph extends it with its own per-request state. */
export interface BaseContext {
  principal: Principal;
  requestId: string;
  /** The router's proof as received, forwarded when this service calls another one for the same request. */
  proof: string;
  log: Logger;
}

export interface SubgraphServerOptions<C extends BaseContext> {
  name: string;
  /** 0 picks a free port. */
  port: number;
  /** @default '127.0.0.1' */
  host?: string;
  typeDefs: DocumentNode;
  /** The generated `Resolvers` object of the subgraph (typed by codegen, checked there). */
  resolvers: object;
  internalSecret: string;
  log: Logger;
  /** Adds per-request state (an EntityManager fork, DataLoaders) to the verified base context. */
  createContext: (base: BaseContext) => C | Promise<C>;
  /** Named checks for /readyz; all must be true for a 200. */
  readiness?: () => Promise<Record<string, boolean>>;
  /**
   * Extra routes (internal endpoints), tried before /graphql: true when it answered the request.
   * Whatever it throws is logged and answered 500.
   */
  routes?: (req: IncomingMessage, res: ServerResponse, path: string) => boolean | Promise<boolean>;
  /** Called after the HTTP server has closed (close the ORM, queues...). */
  onClose?: () => Promise<void>;
  /** `/metrics` answers only this bearer token when set (METRICS_TOKEN). */
  metricsToken?: string;
}

export interface RunningServer {
  url: string;
  port: number;
  /** The service's metrics (answered at /metrics on its port): a service may add its own. */
  metrics?: ServiceMetrics;
  close: () => Promise<void>;
}

/** Bodies of GraphQL requests to a subgraph: the router's fetches, well under this. */
const BODY_LIMIT_BYTES = 2 * 1024 * 1024;

/**
 * A subgraph: Federation 2 schema served by Apollo Server on node:http, refusing every GraphQL
 * request that does not carry the router's principal proof, with /healthz and /readyz.
 */
export async function startSubgraphServer<C extends BaseContext>(options: SubgraphServerOptions<C>): Promise<RunningServer> {
  const { log } = options;
  const httpServer = createRequestServer(log, (req, res) => handle(req, res));
  const metrics = new ServiceMetrics(options.name);
  const requests = metrics.counter('graphql_requests_total', 'GraphQL requests answered, by outcome (ok or the first error code).', ['outcome']);
  const durations = metrics.histogram('graphql_request_duration_seconds', 'Time from a GraphQL request to the end of its answer.', []);

  const apollo = new ApolloServer<C>({
    schema: buildSubgraphSchema({ typeDefs: options.typeDefs, resolvers: options.resolvers as GraphQLResolverMap<unknown> }),
    includeStacktraceInErrorResponses: false,
    // Our own signal handling closes the ORM after the server; Apollo's would exit before that.
    stopOnTerminationSignals: false,
    formatError: (formatted, error) => maskError(log, formatted, error),
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer }),
      ApolloServerPluginLandingPageDisabled(),
      // Traces are for Apollo's hosted studio, which this platform does not report to.
      ApolloServerPluginInlineTraceDisabled(),
    ],
  });
  await apollo.start();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { path, search } = splitUrl(req.url);
    if (await answerProbe(req, res, path, options.name, async () => (await options.readiness?.()) ?? {})) return;
    if (await answerMetrics(req, res, path, metrics, options.metricsToken)) return;

    const started = process.hrtime.bigint();
    const givenRequestId = headerValue(req, REQUEST_ID_HEADER);
    const requestId = givenRequestId ?? randomUUID();
    let operationName: unknown = null;
    const graphqlPath = path === '/graphql' || path === '/graphql/';
    let errorCode: string | undefined;
    res.once('finish', () => {
      const elapsed = Number(process.hrtime.bigint() - started);
      if (graphqlPath) {
        requests.inc({ outcome: outcomeLabel(errorCode === undefined ? [] : [errorCode], res.statusCode) });
        durations.observe(elapsed / 1e9);
      }
      if (!log.isLevelEnabled('info')) return;
      log.info({ requestId, method: req.method, path, operationName, status: res.statusCode, durationMs: elapsed / 1e6 }, 'request');
    });

    if (options.routes && (await options.routes(req, res, path))) return;
    if (!graphqlPath) return sendGraphQLError(res, 404, 'NOT_FOUND', 'Not found: GraphQL is served at /graphql.');

    // The proof is checked before the body is read: a caller that is not the router learns nothing
    // from how its body is parsed, and is answered UNAUTHENTICATED whatever it sends.
    const proof = headerValue(req, PRINCIPAL_HEADER);
    let verified: ReturnType<typeof verifyPrincipalProof>;
    try {
      verified = verifyPrincipalProof(proof, options.internalSecret);
    } catch (error) {
      return sendGraphQLError(res, 401, 'UNAUTHENTICATED', (error as Error).message);
    }
    let body: unknown;
    try {
      body = req.method === 'POST' ? await readJsonBody(req, { limitBytes: BODY_LIMIT_BYTES }) : undefined;
    } catch (error) {
      if (error instanceof RequestError) return sendGraphQLError(res, error.status, error.code, error.message);
      throw error;
    }
    operationName = (body as { operationName?: unknown } | undefined)?.operationName ?? null;
    const rid = givenRequestId ?? verified.requestId ?? requestId;
    errorCode = await executeGraphQL(apollo, req, res, body, search, async () =>
      options.createContext({
        principal: verified.principal,
        requestId: rid,
        proof: proof!,
        log: log.child({ requestId: rid }),
      }),
    );
  }

  const port = await listen(httpServer, options.port, options.host ?? '127.0.0.1');
  const url = `http://${options.host ?? '127.0.0.1'}:${port}`;
  log.info({ url: `${url}/graphql` }, `${options.name} subgraph ready`);
  return {
    url,
    port,
    metrics,
    close: async () => {
      await apollo.stop();
      await options.onClose?.();
    },
  };
}
