import { PRINCIPAL_HEADER, REQUEST_ID_HEADER } from './principal.js';
import { appError } from './errors.js';
import { createSubgraphFetcher, type FetcherResponse, type SubgraphFetcher } from './http-client.js';

/** One pool of keep-alive connections per process for calls to other services (idle sockets do not hold the process). */
let client: SubgraphFetcher | undefined;

/**
 * Reads an entity owned by another subgraph through that subgraph's own API (its `_entities`
 * field), on behalf of the same caller: the router's proof is forwarded, so the owner's
 * `__resolveReference` decides what the caller may see. Returns null when it is not visible.
 */
export async function fetchEntity<T>(
  subgraphUrl: string,
  typename: string,
  id: string,
  selection: string,
  caller: { proof: string; requestId: string },
  timeoutMs = 5000,
): Promise<T | null> {
  return (await fetchEntities<T>(subgraphUrl, typename, [id], selection, caller, timeoutMs))[0];
}

/** {@link fetchEntity} for several ids of one type in one request, answering in `ids` order. */
export async function fetchEntities<T>(
  subgraphUrl: string,
  typename: string,
  ids: readonly string[],
  selection: string,
  caller: { proof: string; requestId: string },
  timeoutMs = 5000,
): Promise<(T | null)[]> {
  const query = `query ($r: [_Any!]!) { _entities(representations: $r) { ... on ${typename} { ${selection} } } }`;
  let response: FetcherResponse;
  client ??= createSubgraphFetcher();
  try {
    response = await client.fetcher(`${subgraphUrl}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [PRINCIPAL_HEADER]: caller.proof,
        [REQUEST_ID_HEADER]: caller.requestId,
      },
      body: JSON.stringify({ query, variables: { r: ids.map((id) => ({ __typename: typename, id })) } }),
      timeoutMs,
    });
  } catch {
    throw appError('SERVICE_UNAVAILABLE', `The service that owns ${typename} is unreachable; try again.`);
  }
  const body = (await response.json().catch(() => null)) as { data?: { _entities?: (T | null)[] }; errors?: unknown[] } | null;
  if (!body?.data?._entities) {
    throw appError('SERVICE_UNAVAILABLE', `The service that owns ${typename} did not answer; try again.`);
  }
  const entities = ids.map((_, i) => body.data!._entities![i] ?? null);
  // Null with errors is the owner failing (its database away), not the entity being absent.
  if (entities.includes(null) && body.errors?.length) {
    throw appError('SERVICE_UNAVAILABLE', `The service that owns ${typename} could not answer; try again.`);
  }
  return entities;
}
