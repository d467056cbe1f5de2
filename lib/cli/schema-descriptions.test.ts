import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Kind, parse, type DefinitionNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';

/**
 * Sandbox shows descriptions to users: every type, field, argument, input field and enum value of
 * every subgraph listed in supergraph.yaml has a `"""` description (root operation types excepted;
 * their fields and arguments are not).
 */
const root = resolve(import.meta.dirname, '../..');
const config = YAML.parse(readFileSync(resolve(root, 'supergraph.yaml'), 'utf8')) as { subgraphs: Record<string, { schema: { file: string } }> };
const ROOT_TYPES = new Set(['Query', 'Mutation', 'Subscription']);

function undescribed(definition: DefinitionNode): string[] {
  if (!('name' in definition) || !definition.name || definition.kind === Kind.DIRECTIVE_DEFINITION) return [];
  const type = definition.name.value;
  const missing: string[] = [];
  if (!ROOT_TYPES.has(type) && !('description' in definition && definition.description)) missing.push(type);
  const members = [...('fields' in definition ? (definition.fields ?? []) : []), ...('values' in definition ? (definition.values ?? []) : [])];
  for (const member of members) {
    const path = `${type}.${member.name.value}`;
    if (!member.description) missing.push(path);
    const args = 'arguments' in member ? (member.arguments ?? []) : [];
    for (const argument of args) if (!argument.description) missing.push(`${path}(${argument.name.value})`);
  }
  return missing;
}

describe('subgraph schemas', () => {
  it.each(Object.entries(config.subgraphs))('%s describes every type, field and argument', (_name, spec) => {
    const document = parse(readFileSync(resolve(root, spec.schema.file), 'utf8'));
    expect(document.definitions.flatMap(undescribed)).toEqual([]);
  });
});
