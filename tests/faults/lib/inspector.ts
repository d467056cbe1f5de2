import { writeFileSync } from 'node:fs';
import WebSocket from 'ws';

/**
 * The V8 heap of another Node process, read through its inspector: start the process with
 * `NODE_OPTIONS=--inspect=127.0.0.1:0` and pass its output, which names the inspector's address.
 *
 * RSS after a burst says where the allocator and the collector happen to be; the heap in use
 * right after a full collection says what the process still holds, which is what a leak grows.
 */
export class HeapProbe {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  private snapshotChunks: string[] | undefined;

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { id?: number; method?: string; params?: { chunk?: string }; result?: unknown; error?: { message: string } };
      if (message.method === 'HeapProfiler.addHeapSnapshotChunk') {
        this.snapshotChunks?.push(message.params!.chunk!);
        return;
      }
      const waiter = message.id === undefined ? undefined : this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id!);
      if (message.error) waiter.reject(new Error(message.error.message));
      else waiter.resolve(message.result);
    });
    socket.on('close', () => {
      for (const waiter of this.pending.values()) waiter.reject(new Error('inspector connection closed'));
      this.pending.clear();
    });
  }

  /** Connects to the inspector whose `Debugger listening on ws://...` line `output()` holds (waits up to 10 s for it). */
  static async connect(output: () => string): Promise<HeapProbe> {
    const deadline = Date.now() + 10_000;
    let url: string | undefined;
    while (!(url = /Debugger listening on (ws:\/\/\S+)/.exec(output())?.[1])) {
      if (Date.now() > deadline) throw new Error(`no inspector address in the process's output:\n${output().slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return new HeapProbe(socket);
  }

  private call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Heap in use (MiB, one decimal) right after full garbage collections. */
  async heapAfterGcMib(): Promise<number> {
    // Twice: objects with finalizers or weak references are freed by the second collection.
    await this.call('HeapProfiler.collectGarbage');
    await this.call('HeapProfiler.collectGarbage');
    const result = (await this.call('Runtime.evaluate', { expression: 'process.memoryUsage().heapUsed', returnByValue: true })) as { result: { value: number } };
    return Math.round((result.result.value / 1024 / 1024) * 10) / 10;
  }

  /**
   * Retained-by-nobody-else bytes per kind of object (constructor name, or the node type for
   * strings, code, arrays...), from a heap snapshot: compare two to see what grew.
   */
  async heapByKind(saveTo?: string): Promise<Map<string, { count: number; bytes: number }>> {
    this.snapshotChunks = [];
    await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    const text = this.snapshotChunks.join('');
    // For a look at who retains what: open it in Chrome DevTools' Memory tab.
    if (saveTo) writeFileSync(saveTo, text);
    const snapshot = JSON.parse(text) as {
      snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
      nodes: number[];
      strings: string[];
    };
    this.snapshotChunks = undefined;
    const fields = snapshot.snapshot.meta.node_fields;
    const types = snapshot.snapshot.meta.node_types[0];
    const [typeAt, nameAt, sizeAt] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
    const kinds = new Map<string, { count: number; bytes: number }>();
    for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
      const type = types[snapshot.nodes[i + typeAt]];
      const kind = type === 'object' || type === 'closure' ? `${type} ${snapshot.strings[snapshot.nodes[i + nameAt]]}` : type;
      const entry = kinds.get(kind) ?? { count: 0, bytes: 0 };
      entry.count += 1;
      entry.bytes += snapshot.nodes[i + sizeAt];
      kinds.set(kind, entry);
    }
    return kinds;
  }

  close(): void {
    this.socket.close();
  }
}

/** The kinds that grew most between two `heapByKind` results, as lines for a failure message. */
export function heapGrowth(before: Map<string, { count: number; bytes: number }>, after: Map<string, { count: number; bytes: number }>, top = 15): string[] {
  return [...after]
    .map(([kind, a]) => ({ kind, bytes: a.bytes - (before.get(kind)?.bytes ?? 0), count: a.count - (before.get(kind)?.count ?? 0) }))
    .sort((x, y) => y.bytes - x.bytes)
    .slice(0, top)
    .map(({ kind, bytes, count }) => `${(bytes / 1024).toFixed(0).padStart(8)} KiB ${String(count).padStart(7)} × ${kind}`);
}
