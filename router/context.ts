import type { Principal } from '../lib/principal.js';

/** What the router notes about one HTTP request for its single log line. */
export interface RequestRecord {
  requestId: string;
  /** Client IP as express sees it (through TRUST_PROXY hops). */
  clientIp: string;
  /** User id, API key id, or "anonymous"; unset until the credentials are checked. */
  principalId?: string;
  operationName?: string;
  /** query or mutation, once the operation is resolved (for the metrics). */
  operationType?: string;
  /** `extensions.code` of every error sent, after masking. */
  errorCodes: string[];
}

/** The Apollo context of a router request, read by the policy plugin and the subgraph data sources. */
export interface RouterContext {
  principal: Principal;
  record: RequestRecord;
  /** The signed principal proof for the subgraphs, made at the first subgraph fetch and reused. */
  proof?: string;
}
