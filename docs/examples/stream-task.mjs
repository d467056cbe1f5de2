// Signs up (or logs in), creates an agent, runs a task and prints its answer as it streams in.
//   node docs/examples/stream-task.mjs "Tell me about federation"
// Against another router: ROUTER=http://host:8000 node docs/examples/stream-task.mjs "..."
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const router = process.env.ROUTER ?? 'http://localhost:8000';
const input = process.argv[2] ?? 'Hello, agent platform!';
const email = process.env.EMAIL ?? 'demo@example.com';
const password = process.env.PASSWORD ?? 'correct horse battery staple';

async function graphql(query, variables = {}, token) {
  const response = await fetch(`${router}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(body.errors.map((e) => `${e.extensions?.code}: ${e.message}`).join('\n'));
  return body.data;
}

const auth = 'accessToken user { id email }';
let session;
try {
  session = (await graphql(`mutation ($e: String!, $p: String!) { signUp(email: $e, password: $p) { ${auth} } }`, { e: email, p: password })).signUp;
} catch {
  session = (await graphql(`mutation ($e: String!, $p: String!) { login(email: $e, password: $p) { ${auth} } }`, { e: email, p: password })).login;
}
const token = session.accessToken;

const { createAgent } = await graphql(
  `mutation { createAgent(input: { name: "Demo", provider: "${process.env.PROVIDER ?? 'echo'}", model: "${process.env.MODEL ?? 'echo-1'}" }) { id name } }`,
  {},
  token,
);
const { runTask } = await graphql(`mutation ($a: ID!, $i: String!) { runTask(input: { agentId: $a, input: $i }) { id status } }`, { a: createAgent.id, i: input }, token);
console.error(`task ${runTask.id} ${runTask.status} on agent ${createAgent.name}`);

const client = createClient({ url: `${router.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` } });
const events = client.iterate({
  query: `subscription ($id: ID!) { taskEvents(taskId: $id) { sequence type delta attempt task { status usage { totalTokens } } } }`,
  variables: { id: runTask.id },
});
for await (const { data, errors } of events) {
  if (errors) throw new Error(JSON.stringify(errors));
  const event = data.taskEvents;
  if (event.type === 'TOKEN') process.stdout.write(event.delta);
  else if (event.type === 'STARTED' && event.attempt > 1) process.stdout.write(`\n[attempt ${event.attempt} starts over]\n`);
  else if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(event.type)) {
    process.stdout.write(`\n[${event.type}${event.delta ? `: ${event.delta}` : ''}; ${event.task.usage?.totalTokens ?? '?'} tokens]\n`);
  }
}
await client.dispose();
