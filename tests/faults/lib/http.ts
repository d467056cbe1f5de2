import { ROOT } from '../../support/processes.js';

/** One answer as a client sees it on the wire, whatever its content type. */
export interface RawAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] } | undefined;
  /** `extensions.code` of each error. */
  codes: string[];
}

export async function send(url: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<RawAnswer> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(init.timeoutMs ?? 30_000) });
  const text = await response.text();
  let json: RawAnswer['json'];
  try {
    json = JSON.parse(text) as RawAnswer['json'];
  } catch {
    json = undefined;
  }
  const codes = (json?.errors ?? []).map((error) => String(error.extensions?.code ?? 'NO_CODE'));
  return { status: response.status, headers: response.headers, text, json, codes };
}

/** POSTs `{ query, variables }` as JSON. */
export function postOperation(url: string, query: string, variables: Record<string, unknown>, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return send(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ query, variables }) });
}

/**
 * What must never reach a client: stack frames, dependency or repository paths, an error naming a
 * source file. Each with a name for the failure message.
 */
const INTERNALS: [string, RegExp][] = [
  ['a stack frame', /\bat [^\n"]*\((?:file:\/\/|node:)?\/?[^)\n"]*:\d+:\d+\)/],
  ['a stack frame', /\bat (?:file:\/\/|node:)?\/\S+:\d+:\d+/],
  ['a dependency path', /node_modules/],
  ['a repository path', /\/work\//],
  ['the repository path', new RegExp(ROOT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))],
  ['an error naming a source file', /Error:[^\n"]*\/[\w.-]+\.(?:[cm]?[jt]s)\b/],
  ['a stacktrace field', /"stacktrace"/],
];

/** The first internal detail `text` shows, or undefined. */
export function internalsIn(text: string): string | undefined {
  for (const [name, pattern] of INTERNALS) {
    const match = pattern.exec(text);
    if (match) return `${name}: ${match[0].slice(0, 120)}`;
  }
  return undefined;
}
