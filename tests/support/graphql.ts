import { signPrincipalProof, type Principal, type Scope, SCOPES } from '../../lib/principal.js';
import { TEST_INTERNAL_SECRET } from './database.js';

export interface GraphQLResponse<T = any> {
  status: number;
  data?: T;
  errors?: { message: string; extensions?: { code?: string; [key: string]: unknown }; path?: (string | number)[] }[];
  headers: Headers;
}

/** POSTs one GraphQL operation and returns status, body and headers (never throws on GraphQL errors). */
export async function postGraphQL<T = any>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<GraphQLResponse<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  let body: { data?: T; errors?: GraphQLResponse['errors'] } = {};
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`non-JSON answer (${response.status}): ${text.slice(0, 200)}`);
  }
  return { status: response.status, data: body.data ?? undefined, errors: body.errors, headers: response.headers };
}

/** Acts as the router towards a subgraph: a proof header for a user, an API key or nobody. */
export function proofFor(principal: Principal): Record<string, string> {
  return { 'x-principal-proof': signPrincipalProof(principal, TEST_INTERNAL_SECRET) };
}

export function asUser(userId: string, scopes: readonly Scope[] = SCOPES): Record<string, string> {
  return proofFor({ kind: 'user', userId, scopes: [...scopes] });
}

export function asApiKey(userId: string, scopes: Scope[]): Record<string, string> {
  return proofFor({ kind: 'api_key', userId, apiKeyId: '00000000-0000-4000-8000-000000000000', scopes });
}

export const asAnonymous = (): Record<string, string> => proofFor({ kind: 'anonymous', scopes: [] });

export const errorCodes = (response: GraphQLResponse): (string | undefined)[] =>
  (response.errors ?? []).map((e) => e.extensions?.code);
