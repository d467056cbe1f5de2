import http from 'node:http';
import https from 'node:https';

/**
 * The HTTP client of calls between our services (the router's subgraph fetches, a subgraph reading
 * another's entities): node:http over keep-alive agents, so a request reuses a warm connection
 * instead of paying a TCP handshake, with a timeout per fetch. Leaner than the gateway's default
 * (make-fetch-happen), which adds an HTTP cache layer we never use, and than the global fetch
 * (undici's WHATWG streams): URLs are parsed once, the answer is read as one string, and its
 * headers stay raw until asked for.
 */
export interface SubgraphFetcherOptions {
  /**
   * A fetch not answered in full within this long fails, and its request is cut (the connection
   * closed, so the server sees the caller leave). @default 30000
   */
  timeoutMs?: number;
  /** Open connections per subgraph at most. @default 256 */
  maxSockets?: number;
}

export interface FetcherRequest {
  method: string;
  /** Sent as given, plus content-length (set on this object). */
  headers: Record<string, string>;
  body: string;
  /** This fetch's own deadline instead of the client's `timeoutMs`. */
  timeoutMs?: number;
}

/** A buffered answer: as much of the fetch API's Response as the data sources read. */
export interface FetcherResponse {
  readonly url: string;
  readonly status: number;
  readonly statusText: string;
  readonly ok: boolean;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
  json(): Promise<unknown>;
}

export type Fetcher = (url: string, init: FetcherRequest) => Promise<FetcherResponse>;

export interface SubgraphFetcher {
  fetcher: Fetcher;
  /** Closes the pooled connections. */
  close(): void;
}

class RawHeaders {
  constructor(private readonly raw: readonly string[]) {}

  get(name: string): string | null {
    const wanted = name.toLowerCase();
    let found: string | null = null;
    for (let i = 0; i < this.raw.length; i += 2) {
      if (this.raw[i].toLowerCase() === wanted) found = found === null ? this.raw[i + 1] : `${found}, ${this.raw[i + 1]}`;
    }
    return found;
  }
}

class BufferedResponse implements FetcherResponse {
  readonly ok: boolean;
  readonly headers: RawHeaders;

  constructor(
    readonly url: string,
    readonly status: number,
    readonly statusText: string,
    rawHeaders: string[],
    private readonly body: string,
  ) {
    this.ok = status >= 200 && status < 300;
    this.headers = new RawHeaders(rawHeaders);
  }

  async text(): Promise<string> {
    return this.body;
  }

  async json(): Promise<unknown> {
    return JSON.parse(this.body);
  }
}

interface Target {
  secure: boolean;
  host: string;
  hostname: string;
  port: string;
  path: string;
}

/** How long a pooled connection to a subgraph may stay idle (below lib/http.ts SERVER_KEEP_ALIVE_MS). */
export const FREE_SOCKET_IDLE_MS = 30_000;

export function createSubgraphFetcher(options: SubgraphFetcherOptions = {}): SubgraphFetcher {
  const timeoutMs = options.timeoutMs ?? 30_000;
  // An idle pooled socket is closed by us after FREE_SOCKET_IDLE_MS, before the subgraph's server
  // would (SERVER_KEEP_ALIVE_MS): never a request on a socket the other side is closing.
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 256, scheduling: 'lifo' as const, timeout: FREE_SOCKET_IDLE_MS };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  // A router talks to a handful of subgraph URLs: each is parsed once.
  const targets = new Map<string, Target>();

  function targetOf(url: string): Target {
    let target = targets.get(url);
    if (!target) {
      const parsed = new URL(url);
      target = {
        secure: parsed.protocol === 'https:',
        host: parsed.host,
        hostname: parsed.hostname.replace(/^\[|\]$/g, ''),
        port: parsed.port,
        path: `${parsed.pathname}${parsed.search}`,
      };
      if (targets.size < 1000) targets.set(url, target);
    }
    return target;
  }

  const fetcher: Fetcher = (url, init) =>
    new Promise<FetcherResponse>((resolve, reject) => {
      const target = targetOf(url);
      const deadlineMs = init.timeoutMs ?? timeoutMs;
      init.headers['content-length'] = String(Buffer.byteLength(init.body));
      // One timer for the whole fetch: a server that answers slowly, or trickles its answer, is
      // given up on as surely as a silent one, and destroying the request frees its socket.
      const timer = setTimeout(() => request.destroy(new Error(`No complete answer from ${target.host} within ${deadlineMs} ms.`)), deadlineMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(error);
      };
      const request = (target.secure ? https : http).request(
        {
          hostname: target.hostname,
          port: target.port,
          path: target.path,
          method: init.method,
          headers: init.headers,
          agent: target.secure ? httpsAgent : httpAgent,
        },
        (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => {
            body += chunk;
          });
          response.on('error', fail);
          response.on('end', () => {
            clearTimeout(timer);
            resolve(new BufferedResponse(url, response.statusCode ?? 0, response.statusMessage ?? '', response.rawHeaders, body));
          });
        },
      );
      request.on('error', fail);
      request.end(init.body);
    });

  return {
    fetcher,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
