import express, { type ErrorRequestHandler, type Express, type RequestHandler, type Response } from 'express';
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { ApolloServer } from '@apollo/server';
import { expressMiddleware } from '@as-integrations/express5';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginInlineTraceDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { buildSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import type { DocumentNode } from 'graphql';
import type { Logger } from 'pino';
import { maskError, type ErrorCode } from './errors.js';
import { listen } from './http.js';
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
  /** Extra routes (internal endpoints) mounted before /graphql. */
  routes?: (app: Express) => void;
  /** Called after the HTTP server has closed (close the ORM, queues...). */
  onClose?: () => Promise<void>;
}

export interface RunningServer {
  url: string;
  port: number;
  close: () => Promise<void>;
}

function sendError(res: Response, status: number, code: ErrorCode, message: string): void {
  res.status(status).json({ errors: [{ message, extensions: { code } }] });
}

/**
 * A subgraph: Federation 2 schema served by Apollo Server on express, refusing every GraphQL
 * request that does not carry the router's principal proof, with /healthz and /readyz.
 */
export async function startSubgraphServer<C extends BaseContext>(options: SubgraphServerOptions<C>): Promise<RunningServer> {
  const { log } = options;
  const app = express();
  app.disable('x-powered-by');
  const httpServer = createServer(app);

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

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', service: options.name });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = (await options.readiness?.().catch(() => ({ readiness: false }))) ?? {};
    const ready = Object.values(checks).every(Boolean);
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', service: options.name, checks });
  });

  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    const requestId = req.header(REQUEST_ID_HEADER) ?? randomUUID();
    res.on('finish', () => {
      if (req.path === '/healthz' || req.path === '/readyz') return;
      log.info(
        {
          requestId,
          method: req.method,
          path: req.path,
          operationName: (req.body as { operationName?: unknown } | undefined)?.operationName ?? null,
          status: res.statusCode,
          durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        },
        'request',
      );
    });
    next();
  });

  options.routes?.(app);

  // The proof is checked before the body is read: a caller that is not the router learns nothing
  // from how its body is parsed, and is answered UNAUTHENTICATED whatever it sends.
  const onlyThroughRouter: RequestHandler = (req, res, next) => {
    try {
      res.locals.verified = verifyPrincipalProof(req.header(PRINCIPAL_HEADER), options.internalSecret);
    } catch (error) {
      sendError(res, 401, 'UNAUTHENTICATED', (error as Error).message);
      return;
    }
    next();
  };

  app.use(
    '/graphql',
    onlyThroughRouter,
    express.json({ limit: '2mb' }),
    expressMiddleware(apollo, {
      context: async ({ req, res }) => {
        const { principal, requestId } = res.locals.verified as ReturnType<typeof verifyPrincipalProof>;
        const rid = req.header(REQUEST_ID_HEADER) ?? requestId ?? randomUUID();
        return options.createContext({
          principal,
          requestId: rid,
          proof: req.header(PRINCIPAL_HEADER)!,
          log: log.child({ requestId: rid }),
        });
      },
    }),
  );
  app.use((_req, res) => sendError(res, 404, 'NOT_FOUND', 'Not found: GraphQL is served at /graphql.'));
  // Without this, Express answers body errors with an HTML page that carries the stack trace.
  const bodyErrors: ErrorRequestHandler = (error, _req, res, next) => {
    if (res.headersSent) return next(error);
    const { type, status } = error as { type?: string; status?: number };
    if (type === 'entity.too.large') return sendError(res, 413, 'PAYLOAD_TOO_LARGE', 'The request body is too large.');
    if (type === 'entity.parse.failed') return sendError(res, 400, 'BAD_REQUEST', 'The request body is not valid JSON.');
    if (typeof status === 'number' && status >= 400 && status < 500) return sendError(res, 400, 'BAD_REQUEST', 'The request body cannot be read.');
    log.error({ err: error }, 'unexpected error before GraphQL');
    sendError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error.');
  };
  app.use(bodyErrors);

  const port = await listen(httpServer, options.port, options.host ?? '127.0.0.1');
  const url = `http://${options.host ?? '127.0.0.1'}:${port}`;
  log.info({ url: `${url}/graphql` }, `${options.name} subgraph ready`);
  return {
    url,
    port,
    close: async () => {
      await apollo.stop();
      await options.onClose?.();
    },
  };
}
