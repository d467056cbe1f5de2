import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Supergraph } from '@apollo/federation-internals';
import { isUnionType, type GraphQLSchema } from 'graphql';
import { ROOT } from '../../support/processes.js';

/** One subgraph as the composed supergraph describes it. */
export interface SubgraphSchema {
  name: string;
  /** The subgraph's own schema (with `_entities`, `_Any`, `_Entity`), extracted from the supergraph. */
  schema: GraphQLSchema;
  /** Members of its `_Entity` union: every type `_entities` accepts here, resolvable or not. */
  entityTypes: string[];
}

export interface LoadedSupergraph {
  /** What the router serves to clients: no `_entities`, no join directives. */
  api: GraphQLSchema;
  subgraphs: SubgraphSchema[];
  /** Every entity type of any subgraph, sorted. */
  entityTypes: string[];
}

/**
 * The committed supergraph (what the router serves), read with the same helpers the gateway uses:
 * its API schema and each subgraph's schema, so probes follow the schema rather than a hand list.
 */
export function loadSupergraph(path = resolve(ROOT, 'schema/supergraph.graphql')): LoadedSupergraph {
  const supergraph = Supergraph.build(readFileSync(path, 'utf8'));
  const subgraphs = supergraph.subgraphs().values().map((subgraph) => {
    const schema = subgraph.schema.toGraphQLJSSchema();
    const entity = schema.getType('_Entity');
    return {
      name: subgraph.name,
      schema,
      entityTypes: entity && isUnionType(entity) ? entity.getTypes().map((type) => type.name).sort() : [],
    };
  });
  const entityTypes = [...new Set(subgraphs.flatMap((s) => s.entityTypes))].sort();
  return { api: supergraph.apiSchema().toGraphQLJSSchema(), subgraphs, entityTypes };
}
