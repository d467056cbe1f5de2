import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJsonBody, RequestError, sendJson } from './graphql-http.js';

/** A server that answers what readJsonBody made of the request: the value, or the refusal. */
let server: Server;
let port: number;

beforeAll(async () => {
  server = createServer((req, res) => {
    readJsonBody(req, {
      limitBytes: 1024,
      verify: (bytes) => {
        if (bytes.includes('forbidden')) throw new RequestError(400, 'BAD_REQUEST', 'refused by verify');
      },
    }).then(
      (body) => sendJson(res, 200, { body: body === undefined ? 'undefined' : body }),
      (error: unknown) => sendJson(res, error instanceof RequestError ? error.status : 500, { code: (error as RequestError).code, message: (error as Error).message }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** Sends raw bytes with the given headers (node:http, so nothing rewrites them). */
function send(body: Buffer | string, headers: Record<string, string>): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const JSON_TYPE = { 'content-type': 'application/json' };

describe('readJsonBody', () => {
  it('parses JSON objects and arrays, with or without a UTF-8 charset, and gzip or deflate encoded', async () => {
    expect(await send('{"query":"{ me { id } }"}', JSON_TYPE)).toEqual({ status: 200, json: { body: { query: '{ me { id } }' } } });
    expect(await send(' [1, 2]', { 'content-type': 'Application/JSON; charset="UTF-8"' })).toEqual({ status: 200, json: { body: [1, 2] } });
    expect(await send(gzipSync('{"a":"zoë"}'), { ...JSON_TYPE, 'content-encoding': 'gzip' })).toEqual({ status: 200, json: { body: { a: 'zoë' } } });
  });

  it('leaves bodies of other content types unread, and reads an empty JSON body as {}', async () => {
    expect(await send('{"query":"x"}', { 'content-type': 'text/plain' })).toEqual({ status: 200, json: { body: 'undefined' } });
    expect(await send('', JSON_TYPE)).toEqual({ status: 200, json: { body: {} } });
  });

  it('refuses what express.json() refused, with a status and a code', async () => {
    const refusals: [string, Buffer | string, Record<string, string>, number][] = [
      ['not JSON', '{"query": ', JSON_TYPE, 400],
      ['a bare number (strict)', '42', JSON_TYPE, 400],
      ['another charset', '{}', { 'content-type': 'application/json; charset=latin1' }, 400],
      ['an unknown encoding', '{}', { ...JSON_TYPE, 'content-encoding': 'compress' }, 400],
      ['gzip that is not', 'not gzip', { ...JSON_TYPE, 'content-encoding': 'gzip' }, 400],
      ['bytes verify refuses', '{"forbidden":1}', JSON_TYPE, 400],
      ['a body over the limit', JSON.stringify({ pad: 'x'.repeat(5000) }), JSON_TYPE, 413],
      ['a gzip bomb', gzipSync(JSON.stringify({ pad: 'x'.repeat(1_000_000) })), { ...JSON_TYPE, 'content-encoding': 'gzip' }, 413],
    ];
    for (const [name, body, headers, status] of refusals) {
      const answer = await send(body, headers);
      expect(answer.status, name).toBe(status);
      expect(answer.json.code, name).toBe(status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST');
    }
  });

  it('answers a client still sending a large body, instead of breaking its pipe', async () => {
    // 4 MB, far past the 1 KB limit and the socket buffers: the refusal waits for the last byte.
    const answer = await send(Buffer.alloc(4 * 1024 * 1024, 'x'), JSON_TYPE);
    expect(answer).toMatchObject({ status: 413, json: { code: 'PAYLOAD_TOO_LARGE' } });
  });
});
