import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { clientIpOf, closeReason, credentialsOf } from './subscriptions.js';

function upgrade(headers: Record<string, string> = {}, remoteAddress = '::ffff:10.0.0.9'): IncomingMessage {
  return { headers, socket: { remoteAddress } } as unknown as IncomingMessage;
}

describe('credentialsOf', () => {
  it('reads connectionParams first, in any of the documented spellings', () => {
    const request = upgrade({ authorization: 'Bearer from-header' });
    expect(credentialsOf({ authorization: 'Bearer a' }, request)).toEqual({ authorization: 'Bearer a', apiKey: undefined });
    expect(credentialsOf({ Authorization: 'Bearer b' }, request)).toEqual({ authorization: 'Bearer b', apiKey: undefined });
    expect(credentialsOf({ 'x-api-key': 'ak_1' }, request)).toEqual({ authorization: undefined, apiKey: 'ak_1' });
    expect(credentialsOf({ token: 'c' }, request)).toEqual({ authorization: 'Bearer c' });
    // Both given: passed on as both, which the authenticator refuses.
    expect(credentialsOf({ authorization: 'Bearer a', 'x-api-key': 'ak_1' }, request)).toEqual({ authorization: 'Bearer a', apiKey: 'ak_1' });
  });

  it('falls back to the upgrade request headers, and refuses params that are not strings', () => {
    expect(credentialsOf(undefined, upgrade({ authorization: 'Bearer h' }))).toEqual({ authorization: 'Bearer h', apiKey: undefined });
    expect(credentialsOf({}, upgrade({ 'x-api-key': 'ak_h' }))).toEqual({ authorization: undefined, apiKey: 'ak_h' });
    expect(credentialsOf({}, upgrade())).toEqual({ authorization: undefined, apiKey: undefined });
    expect(() => credentialsOf({ authorization: 42 }, upgrade())).toThrow(/connectionParams.authorization must be a string/);
  });
});

describe('clientIpOf', () => {
  it('uses the socket address unless proxies are trusted, then reads X-Forwarded-For that many hops back', () => {
    const request = upgrade({ 'x-forwarded-for': '1.1.1.1, 2.2.2.2, 3.3.3.3' });
    expect(clientIpOf(request, 0)).toBe('10.0.0.9');
    expect(clientIpOf(request, 1)).toBe('3.3.3.3');
    expect(clientIpOf(request, 2)).toBe('2.2.2.2');
    expect(clientIpOf(request, 9)).toBe('1.1.1.1');
    expect(clientIpOf(upgrade(), 1)).toBe('10.0.0.9');
  });
});

describe('closeReason', () => {
  it('keeps reasons within the 123 bytes a close frame allows', () => {
    expect(closeReason('short')).toBe('short');
    for (const long of ['x'.repeat(500), 'é'.repeat(100), '😀'.repeat(40)]) {
      const reason = closeReason(long);
      expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
      expect(reason.endsWith('…')).toBe(true);
    }
  });
});
