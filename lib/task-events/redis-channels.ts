/**
 * One Redis subscriber connection per process, shared by every listener: a channel per task,
 * SUBSCRIBE on its first listener and UNSUBSCRIBE after its last. Each message is parsed once and
 * the same frozen event goes to every listener of the task, in sequence order: a live event that
 * skips sequences (messages lost while the connection was down) waits while the missing ones are
 * read from the log, once per task rather than once per listener, and after every reconnect each
 * channel re-reads what it may have missed.
 *
 * Not graphql-redis-subscriptions' RedisPubSub as the multiplexer: unsubscribing before its
 * SUBSCRIBE is confirmed leaves the channel subscribed and makes its next message throw a
 * TypeError outside any caller, and it offers no hook for reconnects. A RedisPubSub can still be
 * the transport (one RedisPubSub subscription per task, only ever cancelled after it resolved).
 */
import type { RedisPubSub } from 'graphql-redis-subscriptions';
import { Redis } from 'ioredis';
import { freezeTaskEvent, type ChannelListener } from './stream.js';
import type { TaskEvent } from './types.js';

export interface RedisChannelsOptions {
  /** A connection only for subscriptions, or a RedisPubSub whose subscriber connection is used. */
  subscriber: Redis | RedisPubSub;
  /** Close `subscriber` on close (it was made for this log). */
  ownsSubscriber: boolean;
  /** The channel of a task. */
  channelOf: (taskId: string) => string;
  /** Reads the log (through the command connection) to fill gaps. */
  read: (taskId: string, afterSequence: number) => Promise<TaskEvent[]>;
  /** Reports what cannot be thrown to anyone: a failed gap fill, a malformed message. */
  onError: (error: unknown, message: string) => void;
}

class Channel {
  readonly listeners = new Set<ChannelListener>();
  /** The last sequence handed to listeners (0: none yet). */
  lastSeen = 0;
  filling = false;
  fillAgain = false;
  /** Live events that arrived during a fill. */
  held: TaskEvent[] = [];
  ready: Promise<void> = Promise.resolve();

  constructor(
    readonly taskId: string,
    readonly name: string,
  ) {}
}

export class RedisChannels {
  private readonly channels = new Map<string, Channel>();
  private readonly connection: Redis;
  private readonly pubsub: RedisPubSub | null;
  /** RedisPubSub subscription ids per channel name (RedisPubSub transport only). */
  private readonly pubsubIds = new Map<string, Promise<number>>();
  private closed = false;

  constructor(private readonly options: RedisChannelsOptions) {
    if (options.subscriber instanceof Redis) {
      this.pubsub = null;
      this.connection = options.subscriber;
      this.connection.on('message', this.onMessage);
    } else {
      this.pubsub = options.subscriber;
      this.connection = options.subscriber.getSubscriber() as Redis;
    }
    this.connection.on('ready', this.onReady);
  }

  /** Adds the listener synchronously; resolves once its task's channel is subscribed. */
  async listen(taskId: string, listener: ChannelListener): Promise<void> {
    if (this.closed) throw new Error('The task event log is closed.');
    const name = this.options.channelOf(taskId);
    let channel = this.channels.get(name);
    if (!channel) {
      channel = new Channel(taskId, name);
      this.channels.set(name, channel);
      channel.ready = this.subscribe(name);
    }
    channel.listeners.add(listener);
    try {
      await channel.ready;
    } catch (error) {
      this.unlisten(taskId, listener);
      throw error;
    }
  }

  unlisten(taskId: string, listener: ChannelListener): void {
    const name = this.options.channelOf(taskId);
    const channel = this.channels.get(name);
    if (!channel?.listeners.delete(listener) || channel.listeners.size > 0) return;
    this.channels.delete(name);
    this.unsubscribe(name);
  }

  get size(): number {
    return this.channels.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.connection.off('ready', this.onReady);
    this.connection.off('message', this.onMessage);
    const open = [...this.channels.values()];
    this.channels.clear();
    for (const channel of open) for (const listener of channel.listeners) listener.closed?.();
    if (this.options.ownsSubscriber) {
      await this.quit();
    } else {
      for (const channel of open) this.unsubscribe(channel.name);
      await Promise.allSettled(this.pubsubIds.values());
    }
  }

  private async subscribe(name: string): Promise<void> {
    if (!this.pubsub) {
      await this.connection.subscribe(name);
      return;
    }
    const id = this.pubsub.subscribe(name, (message: unknown) => this.onMessage(name, message));
    this.pubsubIds.set(name, id);
    try {
      await id;
    } catch (error) {
      if (this.pubsubIds.get(name) === id) this.pubsubIds.delete(name);
      throw error;
    }
  }

  private unsubscribe(name: string): void {
    if (!this.pubsub) {
      // Sent at once, so it stays ordered after the SUBSCRIBE and before any later re-SUBSCRIBE.
      this.connection.unsubscribe(name).catch((error: unknown) => this.options.onError(error, 'unsubscribe failed'));
      return;
    }
    const id = this.pubsubIds.get(name);
    if (!id) return;
    this.pubsubIds.delete(name);
    const pubsub = this.pubsub;
    // RedisPubSub counts references per channel, so a later subscription of the same channel survives this.
    id.then((subscriptionId) => pubsub.unsubscribe(subscriptionId)).catch(() => {});
  }

  private async quit(): Promise<void> {
    try {
      if (this.pubsub) await this.pubsub.close();
      else await this.connection.quit();
    } catch {
      this.connection.disconnect();
    }
  }

  private readonly onMessage = (name: string, message: unknown): void => {
    const channel = this.channels.get(name);
    if (!channel) return;
    let event: TaskEvent | null = null;
    try {
      event = freezeTaskEvent(typeof message === 'string' ? JSON.parse(message) : message);
    } catch {
      // reported below
    }
    if (!event || event.taskId !== channel.taskId) {
      this.options.onError(new Error(`malformed message on ${name}`), 'task event message ignored');
      return;
    }
    this.accept(channel, event);
  };

  private accept(channel: Channel, event: TaskEvent): void {
    if (channel.filling) {
      channel.held.push(event);
      return;
    }
    if (event.sequence <= channel.lastSeen) return;
    if (channel.lastSeen > 0 && event.sequence > channel.lastSeen + 1) {
      channel.held.push(event);
      this.fill(channel);
      return;
    }
    this.dispatch(channel, event);
  }

  private dispatch(channel: Channel, event: TaskEvent): void {
    channel.lastSeen = event.sequence;
    for (const listener of channel.listeners) listener.deliver(event);
  }

  /** Reads the log after the channel's last event and hands on what it missed, then what arrived meanwhile. */
  private fill(channel: Channel): void {
    if (channel.filling) {
      channel.fillAgain = true;
      return;
    }
    channel.filling = true;
    void (async () => {
      do {
        channel.fillAgain = false;
        try {
          const missed = await this.options.read(channel.taskId, channel.lastSeen);
          for (const event of missed) if (event.sequence > channel.lastSeen) this.dispatch(channel, event);
        } catch (error) {
          // The streams notice the gap themselves and read again (or fail) when their turn comes.
          this.options.onError(error, 'could not read missed task events');
        }
      } while (channel.fillAgain && !this.closed);
      channel.filling = false;
      const held = channel.held;
      channel.held = [];
      // A gap the fill could not close is passed on as is: the streams re-read on their own.
      for (const event of held) if (event.sequence > channel.lastSeen) this.dispatch(channel, event);
    })();
  }

  /**
   * After a (re)connect ioredis re-subscribes every channel, but what was published while the
   * connection was down is lost. Confirm the subscriptions (replies come in order, so after
   * ioredis's own), then let every channel read what it missed.
   */
  private readonly onReady = (): void => {
    if (this.closed || this.channels.size === 0) return;
    const names = [...this.channels.keys()];
    this.connection.subscribe(...names).then(
      () => {
        for (const name of names) {
          const channel = this.channels.get(name);
          if (channel) this.fill(channel);
        }
      },
      (error: unknown) => this.options.onError(error, 'could not re-subscribe to task events after a reconnect'),
    );
  };
}
