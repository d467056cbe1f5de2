/**
 * Composes the subgraphs listed in supergraph.yaml (rover's format) with @apollo/composition into
 * schema/supergraph.graphql. With --check, writes nothing and exits 1 when the committed file is
 * stale or composition fails.
 */
import { composeServices } from '@apollo/composition';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'graphql';
import YAML from 'yaml';

interface SupergraphConfig {
  subgraphs: Record<string, { routing_url: string; schema: { file: string } }>;
}

const root = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const OUTPUT = resolve(root, 'schema/supergraph.graphql');

export function composeSupergraph(): string {
  const config = YAML.parse(readFileSync(resolve(root, 'supergraph.yaml'), 'utf8')) as SupergraphConfig;
  const services = Object.entries(config.subgraphs).map(([name, spec]) => ({
    name,
    url: spec.routing_url,
    typeDefs: parse(readFileSync(resolve(root, spec.schema.file), 'utf8')),
  }));
  const result = composeServices(services);
  if (result.errors) {
    throw new Error(`Composition failed:\n${result.errors.map((e) => `- ${e.message}`).join('\n')}`);
  }
  return `${result.supergraphSdl.trimEnd()}\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  const check = process.argv.includes('--check');
  try {
    const sdl = composeSupergraph();
    if (check) {
      const current = existsSync(OUTPUT) ? readFileSync(OUTPUT, 'utf8') : '';
      if (current !== sdl) {
        console.error('schema/supergraph.graphql is stale: run `npm run compose` and commit the result.');
        process.exit(1);
      }
      console.log('schema/supergraph.graphql is up to date.');
    } else {
      writeFileSync(OUTPUT, sdl);
      console.log(`Wrote ${OUTPUT}`);
    }
  } catch (error) {
    console.error((error as Error).message);
    process.exit(1);
  }
}
