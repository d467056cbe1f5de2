import http from 'node:http';
import https from 'node:https';
import type { RemoteGraphQLDataSource } from '@apollo/gateway';

// The gateway's own fetcher types, without depending on the package that declares them.
type Fetcher = RemoteGraphQLDataSource['fetcher'];
type FetcherRequestInit = NonNullable<Parameters<Fetcher>[1]>;
type FetcherResponse = Awaited<ReturnType<Fetcher>>;

/**
 * The gateway's HTTP client for subgraph fetches: node:http over keep-alive agents, so a request
 * reuses a warm connection instead of paying a TCP handshake, with a timeout per fetch. Leaner than
 * the gateway's default (make-fetch-happen), which adds an HTTP cache layer the router never uses.
 */
export interface SubgraphFetcherOptions {
  /** A fetch with no bytes moving for this long fails. @default 30000 */
  timeoutMs?: number;
  /** Open connections per subgraph at most. @default 256 */
  maxSockets?: number;
}

export interface SubgraphFetcher {
  fetcher: Fetcher;
  /** Closes the pooled connections. */
  close(): void;
}

class BufferedResponse implements FetcherResponse {
  readonly redirected = false;
  readonly ok: boolean;
  readonly headers: Headers;
  bodyUsed = false;

  constructor(
    readonly url: string,
    readonly status: number,
    readonly statusText: string,
    rawHeaders: string[],
    private readonly body: Buffer,
  ) {
    this.ok = status >= 200 && status < 300;
    this.headers = new Headers();
    for (let i = 0; i < rawHeaders.length; i += 2) this.headers.append(rawHeaders[i], rawHeaders[i + 1]);
  }

  async text(): Promise<string> {
    this.bodyUsed = true;
    return this.body.toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    this.bodyUsed = true;
    return new Uint8Array(this.body).buffer;
  }

  clone(): FetcherResponse {
    return new BufferedResponse(this.url, this.status, this.statusText, [...this.headers].flat(), this.body);
  }
}

export function createSubgraphFetcher(options: SubgraphFetcherOptions = {}): SubgraphFetcher {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 256, scheduling: 'lifo' as const };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);

  const fetcher: Fetcher = (url: string, init: FetcherRequestInit = {}) =>
    new Promise<FetcherResponse>((resolve, reject) => {
      const target = new URL(url);
      const secure = target.protocol === 'https:';
      const body = init.body ?? '';
      const request = (secure ? https : http).request(
        target,
        {
          method: init.method ?? 'GET',
          headers: { ...init.headers, 'content-length': String(Buffer.byteLength(body)) },
          agent: secure ? httpsAgent : httpAgent,
          timeout: timeoutMs,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', reject);
          response.on('end', () => {
            resolve(new BufferedResponse(url, response.statusCode ?? 0, response.statusMessage ?? '', response.rawHeaders, Buffer.concat(chunks)));
          });
        },
      );
      request.on('timeout', () => request.destroy(new Error(`No answer from ${target.host} within ${timeoutMs} ms.`)));
      request.on('error', reject);
      request.end(body);
    });

  return {
    fetcher,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
