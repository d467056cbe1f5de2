import { postGraphQL, type GraphQLResponse } from './graphql.js';

/** A frontend's view of the router: GraphQL over fetch with an optional credential. */
export class Client {
  constructor(
    readonly url: string,
    private readonly credential: Record<string, string> = {},
  ) {}

  static bearer(url: string, token: string): Client {
    return new Client(url, { authorization: `Bearer ${token}` });
  }

  request<T = any>(query: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<GraphQLResponse<T>> {
    return postGraphQL<T>(this.url, query, variables, { ...this.credential, ...headers });
  }

  /** Runs an operation that must succeed and returns its data. */
  async data<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const response = await this.request<T>(query, variables);
    if (response.errors?.length || response.status !== 200) {
      throw new Error(`operation failed (${response.status}): ${JSON.stringify(response.errors)}`);
    }
    return response.data as T;
  }
}

export const AUTH_FIELDS = 'accessToken refreshToken expiresIn user { id email name createdAt }';

export async function signUp(url: string, email: string, password = 'correct horse battery staple', name?: string) {
  const anonymous = new Client(url);
  const { signUp: payload } = await anonymous.data(`mutation ($e: String!, $p: String!, $n: String) { signUp(email: $e, password: $p, name: $n) { ${AUTH_FIELDS} } }`, {
    e: email,
    p: password,
    n: name ?? null,
  });
  return { ...payload, client: Client.bearer(url, payload.accessToken) } as {
    accessToken: string;
    refreshToken: string;
    expiresIn: number;
    user: { id: string; email: string };
    client: Client;
  };
}
