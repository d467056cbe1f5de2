import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  model: string;
  messages: { role: string; content: string }[];
  stream: boolean;
}

export interface FakeOpenAiOptions {
  /** The answer's words, streamed one chunk each. @default the last user message echoed back as "You said: …" */
  reply?: (request: RecordedRequest) => string;
  /** Delay between chunks. @default 0 */
  chunkDelayMs?: number;
}

/**
 * A local server that speaks the OpenAI Chat Completions streaming wire format (SSE
 * `chat.completion.chunk` objects, a usage chunk, then `data: [DONE]`), so the real `openai` SDK
 * in the workers is exercised end to end. It records every request.
 */
export async function startFakeOpenAi(options: FakeOpenAiOptions = {}): Promise<{ baseUrl: string; requests: RecordedRequest[]; close: () => Promise<void> }> {
  const requests: RecordedRequest[] = [];
  const server: Server = createServer(async (req, res) => {
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
      return;
    }
    const request = JSON.parse(await requestText(req)) as RecordedRequest;
    requests.push(request);
    const lastUser = [...request.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
    const text = options.reply?.(request) ?? `You said: ${lastUser}`;
    const words = text.match(/\S+\s*/g) ?? [text];
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    let closed = false;
    req.on('close', () => (closed = true));
    const id = `chatcmpl-${requests.length}`;
    const chunk = (delta: object, finishReason: string | null = null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 0, model: request.model, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
    res.write(chunk({ role: 'assistant', content: '' }));
    for (const word of words) {
      if (closed) return;
      if (options.chunkDelayMs) await new Promise((r) => setTimeout(r, options.chunkDelayMs));
      if (closed) return;
      res.write(chunk({ content: word }));
    }
    res.write(chunk({}, 'stop'));
    const promptTokens = request.messages.reduce((n, m) => n + Math.ceil(m.content.length / 4), 0);
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 0, model: request.model, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: words.length, total_tokens: promptTokens + words.length } })}\n\n`);
    res.end('data: [DONE]\n\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A request's body as text. */
export function requestText(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (data += chunk));
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}
