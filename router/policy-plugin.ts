import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import type { GraphQLError, OperationDefinitionNode } from 'graphql';
import { appError } from '../lib/errors.js';
import { anonymousRefusal, CREDENTIAL_ROOT_FIELDS } from './authenticate.js';
import type { RouterContext } from './context.js';
import { checkOperationLimits, measureOperation, tokenLimitError, type OperationLimits, type OperationMeasure } from './operation-limits.js';
import { rateLimitedError, rateLimitHeaders, type RateLimiter } from './rate-limit.js';

export interface PolicyPluginOptions {
  limits: OperationLimits;
  /** false skips {@link checkOperationLimits} (`OPERATION_LIMITS_ENABLED`). @default true */
  limitsEnabled?: boolean;
  /** Anonymous callers may run every operation (`ALLOW_ANONYMOUS`). @default false */
  allowAnonymous?: boolean;
  /** Limits login/signUp/refreshToken per client IP; absent when rate limiting is off. */
  credentialLimiter?: { limiter: RateLimiter; perMinute: number };
}

/**
 * What the router decides once Apollo Server has parsed and validated the operation, before the
 * gateway plans it: who may run it, whether it is too big, and whether this IP is guessing
 * passwords. Also notes the operation name and error codes for the request log.
 */
export function policyPlugin(options: PolicyPluginOptions): ApolloServerPlugin<RouterContext> {
  const { limits, credentialLimiter } = options;
  const limitsEnabled = options.limitsEnabled ?? true;
  const allowAnonymous = options.allowAnonymous ?? false;
  // Apollo Server caches parsed documents, so the same operation node comes back for a repeated
  // query; its measure is reused unless the cost depends on variables.
  const measures = new WeakMap<OperationDefinitionNode, OperationMeasure>();

  function measure(requestContext: GraphQLRequestContext<RouterContext>, operation: OperationDefinitionNode): OperationMeasure {
    const cached = measures.get(operation);
    if (cached && !cached.costUsesVariables) return cached;
    const fresh = measureOperation(requestContext.document!, operation, {
      schema: requestContext.schema,
      variables: requestContext.request.variables,
      defaultListSize: limits.defaultListSize,
    });
    measures.set(operation, fresh);
    return fresh;
  }

  return {
    async requestDidStart() {
      return {
        async didResolveOperation(requestContext) {
          const { operation, contextValue } = requestContext;
          if (requestContext.operationName) contextValue.record.operationName = requestContext.operationName.slice(0, 100);
          if (!operation) {
            // graphql-js would report this from execute(), but the gateway throws it there, which
            // Apollo Server answers with a 500; refused here like any other bad request instead.
            const name = requestContext.request.operationName;
            throw appError(
              'OPERATION_RESOLUTION_FAILURE',
              name ? `Unknown operation named "${name.slice(0, 100)}".` : 'Must provide operation name if query contains multiple operations.',
              { http: { status: 400 } },
            );
          }
          contextValue.record.operationType = operation.operation;
          // The gateway cannot run them; they have their own transport on the same path.
          if (operation.operation === 'subscription') {
            throw appError('BAD_REQUEST', 'Subscriptions are served over WebSocket (graphql-ws) at ws://<router>/graphql, not over HTTP.');
          }
          const measured = measure(requestContext, operation);

          const refusal =
            (allowAnonymous ? undefined : anonymousRefusal(contextValue.principal, measured.rootFieldNames)) ??
            (limitsEnabled ? checkOperationLimits(measured, limits) : undefined);
          if (refusal) throw refusal;

          if (credentialLimiter && measured.rootFieldNames.some((name) => CREDENTIAL_ROOT_FIELDS.has(name))) {
            const decision = await credentialLimiter.limiter.consume(`credentials:${contextValue.record.clientIp}`, credentialLimiter.perMinute);
            if (decision && !decision.allowed) throw rateLimitedError(decision, 'sign-in attempts from this address');
            // The stricter window is the one that matters to this caller, so its headers win.
            if (decision) for (const [name, value] of rateLimitHeaders(decision)) requestContext.response.http.headers.set(name, value);
          }
        },

        async didEncounterErrors(requestContext) {
          // graphql-js reports the token limit as a syntax error; clients get it as a limit like the others.
          // Apollo formats this very array after the hook, so replacing in place is what gets sent.
          const errors = requestContext.errors as GraphQLError[];
          for (let i = 0; i < errors.length; i++) {
            const replacement = tokenLimitError(errors[i], limits);
            if (replacement) errors[i] = replacement;
          }
        },

        async willSendResponse(requestContext) {
          const { body } = requestContext.response;
          const errors = body.kind === 'single' ? body.singleResult.errors : body.initialResult.errors;
          const record = requestContext.contextValue.record;
          for (const error of errors ?? []) record.errorCodes.push(String(error.extensions?.code ?? 'INTERNAL_SERVER_ERROR'));
        },
      };
    },
  };
}
