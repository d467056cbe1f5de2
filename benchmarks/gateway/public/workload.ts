import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';
import { PUBLIC_SUBGRAPHS, publicSubgraphTypeDefs, type PublicSubgraphName } from './subgraphs.js';

/** The benchmark's one heavy query, as upstream sends it (~87 KB per answer, ~16 subgraph fetches with Apollo's planner). */
export const HEAVY_QUERY = `fragment User on User {
  id
  username
  name
}

fragment Review on Review {
  id
  body
}

fragment Product on Product {
  inStock
  name
  price
  shippingEstimate
  upc
  weight
}

query TestQuery {
  users {
    ...User
    reviews {
      ...Review
      product {
        ...Product
        reviews {
          ...Review
          author {
            ...User
            reviews {
              ...Review
              product {
                ...Product
              }
            }
          }
        }
      }
    }
  }
  topProducts {
    ...Product
    reviews {
      ...Review
      author {
        ...User
        reviews {
          ...Review
          product {
            ...Product
          }
        }
      }
    }
  }
}`;

/** Composes the four subgraphs at their ports (composition runs here, so no generated file can go stale). */
export function composePublicSupergraph(ports: Record<PublicSubgraphName, number>): string {
  const result = composeServices(
    PUBLIC_SUBGRAPHS.map((name) => ({
      name,
      url: `http://127.0.0.1:${ports[name]}/graphql`,
      typeDefs: parse(publicSubgraphTypeDefs(name)),
    })),
  );
  if (result.errors) throw new Error(`The public benchmark subgraphs do not compose:\n${result.errors.map((e) => `- ${e.message}`).join('\n')}`);
  return result.supergraphSdl;
}
