/** The operations every subscriber sends: the same text to the router and to the bare baseline. */

/** What every subscriber selects, on the router and on the bare server alike. */
export const PLAIN_QUERY = 'subscription TaskEvents($id: ID!, $after: Int) { taskEvents(taskId: $id, afterSequence: $after) { sequence type delta at } }';

/**
 * The federated variant (router only): the task's status and its agent's name come from the task
 * and agent subgraphs through the gateway, fetched once per task state and reused for every token.
 */
export const FEDERATED_QUERY =
  'subscription TaskEventsWithTask($id: ID!, $after: Int) { taskEvents(taskId: $id, afterSequence: $after) { sequence type delta at task { status agent { name } } } }';

/** The bare server's schema: the router's `Subscription.taskEvents` and `TaskEvent` (with `at` a plain String), nothing federated. */
export const BARE_SCHEMA = `
type Query { health: String }
type Subscription { taskEvents(taskId: ID!, afterSequence: Int): TaskEvent! }
type TaskEvent { taskId: ID! sequence: Int! type: TaskEventType! attempt: Int! delta: String at: String! }
enum TaskEventType { QUEUED STARTED TOKEN SUCCEEDED FAILED CANCELLED }
`;
