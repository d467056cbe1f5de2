/**
 * What one user owns that nobody else may see: their object ids and strings only they know
 * (titles, message contents, key prefixes and secrets, tokens). A probe's answer leaks when it
 * holds any of them, except the ids the prober passed in itself (an error may echo an argument).
 */
export class OwnerSecrets {
  readonly ids = new Set<string>();
  readonly strings = new Set<string>();

  addIds(...ids: (string | null | undefined)[]): void {
    for (const id of ids) if (id) this.ids.add(id);
  }

  addStrings(...strings: (string | null | undefined)[]): void {
    for (const value of strings) if (value && value.length >= 6) this.strings.add(value);
  }

  /** Every value named `id` anywhere in `value` (a GraphQL answer of the owner's). */
  collectIds(value: unknown): void {
    if (Array.isArray(value)) for (const item of value) this.collectIds(item);
    else if (value && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        if (key === 'id' && typeof inner === 'string') this.ids.add(inner);
        else this.collectIds(inner);
      }
    }
  }

  /** The owner's ids and strings found in `text`, leaving out ids in `passed`. */
  foundIn(text: string, passed: Iterable<string> = []): string[] {
    const allowed = new Set(passed);
    const found: string[] = [];
    for (const id of this.ids) if (!allowed.has(id) && text.includes(id)) found.push(`id ${id}`);
    for (const secret of this.strings) if (text.includes(secret)) found.push(`"${secret.length > 40 ? `${secret.slice(0, 40)}…` : secret}"`);
    return found;
  }
}
