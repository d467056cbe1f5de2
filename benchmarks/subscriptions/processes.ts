/**
 * What the subscriptions benchmark's processes share besides spawning (benchmarks/support): the
 * IPC request/reply between the runner and its load scripts.
 */
import type { BenchChild } from '../support/processes.js';

/** Sends a request over a child's IPC channel and resolves with its reply (matched by `seq`). */
export class IpcPeer {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  constructor(private readonly process: BenchChild) {
    process.child.on('message', (message: { seq?: number; error?: string; result?: unknown }) => {
      const pending = message.seq === undefined ? undefined : this.waiting.get(message.seq);
      if (!pending) return;
      this.waiting.delete(message.seq!);
      if (message.error) pending.reject(new Error(`${process.name}: ${message.error}`));
      else pending.resolve(message.result);
    });
    void process.exited.then((code) => {
      for (const pending of this.waiting.values()) pending.reject(new Error(`${process.name} exited with ${code}:\n${process.output().slice(-3000)}`));
      this.waiting.clear();
    });
  }

  request<T>(command: Record<string, unknown>, timeoutMs = 120_000): Promise<T> {
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        reject(new Error(`${this.process.name} did not answer ${String(command.cmd)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(seq, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.process.child.send({ ...command, seq });
    });
  }
}

/** The child side of {@link IpcPeer}: answers each request with the handler's result or error. */
export function serveIpc(handle: (command: { cmd: string } & Record<string, unknown>) => Promise<unknown>): void {
  if (!process.send) throw new Error('This script runs as a child of the subscriptions benchmark (it needs an IPC channel).');
  process.on('message', (message: { cmd: string; seq: number } & Record<string, unknown>) => {
    handle(message).then(
      (result) => process.send!({ seq: message.seq, result }),
      (error: unknown) => process.send!({ seq: message.seq, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    );
  });
  // The parent going away (or closing the channel) ends the child.
  process.on('disconnect', () => process.exit(0));
}
