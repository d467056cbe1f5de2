/**
 * The public workload's four subgraphs in one process, each on its own port:
 * `node --import tsx benchmarks/gateway/public/serve.ts accounts=4201 inventory=4202 ...`.
 * Prints one JSON line `{"ready":{...ports}}` when all listen. POST /graphql (JSON in, JSON out),
 * GET /healthz, GET /stats (requests and bytes so far). Headers are ignored, the router's principal
 * proof included.
 *
 * The data is static, so an answer depends on the request body alone: answers are kept by body
 * (bounded), which makes a subgraph fetch cost a map lookup for every contender alike and leaves
 * the gateway as what is measured. The first request of each shape is executed by graphql-js.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { execute, parse, validate, type DocumentNode, type GraphQLSchema } from 'graphql';
import { PUBLIC_SUBGRAPHS, publicSubgraphSchema, type PublicSubgraphName } from './subgraphs.js';

const MAX_CACHED_ANSWERS = 2000;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: Buffer | string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function answer(schema: GraphQLSchema, body: string): Promise<{ status: number; body: Buffer; cacheable: boolean }> {
  let request: { query?: unknown; variables?: unknown; operationName?: unknown };
  let document: DocumentNode;
  try {
    request = JSON.parse(body) as typeof request;
    if (typeof request.query !== 'string') throw new Error('"query" must be a string.');
    document = parse(request.query);
  } catch (error) {
    return { status: 400, body: Buffer.from(JSON.stringify({ errors: [{ message: (error as Error).message }] })), cacheable: false };
  }
  const errors = validate(schema, document);
  if (errors.length > 0) return { status: 400, body: Buffer.from(JSON.stringify({ errors })), cacheable: false };
  const result = await execute({
    schema,
    document,
    variableValues: (request.variables ?? undefined) as Record<string, unknown> | undefined,
    operationName: typeof request.operationName === 'string' ? request.operationName : undefined,
  });
  return { status: 200, body: Buffer.from(JSON.stringify(result)), cacheable: !result.errors };
}

function serve(name: PublicSubgraphName, port: number): Promise<number> {
  const schema = publicSubgraphSchema(name);
  const answers = new Map<string, Buffer>();
  // What gateways send, for comparing how many fetches and bytes an answer costs them (GET /stats).
  const stats = { requests: 0, bytesIn: 0, bytesOut: 0 };
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') return send(res, 200, JSON.stringify({ status: 'ok', service: name }));
    if (req.method === 'GET' && req.url === '/stats') return send(res, 200, JSON.stringify(stats));
    if (req.method !== 'POST' || req.url?.split('?')[0] !== '/graphql') return send(res, 404, '{"errors":[{"message":"Not found"}]}');
    readBody(req).then(
      async (body) => {
        stats.requests++;
        stats.bytesIn += Buffer.byteLength(body);
        const cached = answers.get(body);
        if (cached) {
          stats.bytesOut += cached.length;
          return send(res, 200, cached);
        }
        const result = await answer(schema, body);
        stats.bytesOut += result.body.length;
        if (result.cacheable) {
          if (answers.size >= MAX_CACHED_ANSWERS) answers.clear();
          answers.set(body, result.body);
        }
        send(res, result.status, result.body);
      },
      () => send(res, 400, '{"errors":[{"message":"Unreadable body"}]}'),
    ).catch((error: unknown) => send(res, 500, JSON.stringify({ errors: [{ message: String(error) }] })));
  });
  server.keepAliveTimeout = 60_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

const requested = new Map<PublicSubgraphName, number>();
for (const argument of process.argv.slice(2)) {
  const [name, port] = argument.split('=');
  if (!(PUBLIC_SUBGRAPHS as readonly string[]).includes(name) || !/^\d+$/.test(port ?? '')) {
    console.error(`Arguments are <subgraph>=<port> with a subgraph among ${PUBLIC_SUBGRAPHS.join(', ')}; got "${argument}".`);
    process.exit(2);
  }
  requested.set(name as PublicSubgraphName, Number(port));
}
const names = requested.size > 0 ? [...requested.keys()] : PUBLIC_SUBGRAPHS;
const ports = await Promise.all(names.map((name) => serve(name, requested.get(name) ?? 0)));
console.log(JSON.stringify({ ready: Object.fromEntries(names.map((name, i) => [name, ports[i]])) }));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
