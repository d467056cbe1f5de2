/**
 * The four subgraphs of the public federation gateway benchmark (The Guild's
 * graphql-gateways-benchmark): accounts, inventory, products and reviews, with the same small
 * static data, `@requires` on inventory's shipping estimate and `@provides` on a review's author.
 * Written here in Node so that every contender talks to the same cheap subgraphs.
 */
import { buildSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { parse, type GraphQLSchema } from 'graphql';

export type PublicSubgraphName = 'accounts' | 'inventory' | 'products' | 'reviews';
export const PUBLIC_SUBGRAPHS: readonly PublicSubgraphName[] = ['accounts', 'inventory', 'products', 'reviews'];

interface User {
  id: string;
  name: string;
  username: string;
  birthday: number;
}

interface Product {
  upc: string;
  name: string;
  price: number;
  weight: number;
}

interface Review {
  id: string;
  body: string;
  productUpc: string;
}

const USERS: User[] = [
  { id: '1', name: 'Uri Goldshtein', username: 'urigo', birthday: 1234567890 },
  { id: '2', name: 'Dotan Simha', username: 'dotansimha', birthday: 1234567890 },
  { id: '3', name: 'Kamil Kisiela', username: 'kamilkisiela', birthday: 1234567890 },
  { id: '4', name: 'Arda Tanrikulu', username: 'ardatan', birthday: 1234567890 },
  { id: '5', name: 'Gil Gardosh', username: 'gilgardosh', birthday: 1234567890 },
  { id: '6', name: 'Laurin Quast', username: 'laurin', birthday: 1234567890 },
];

const PRODUCTS: Product[] = [
  { upc: '1', name: 'Table', price: 899, weight: 100 },
  { upc: '2', name: 'Couch', price: 1299, weight: 1000 },
  { upc: '3', name: 'Glass', price: 15, weight: 20 },
  { upc: '4', name: 'Chair', price: 499, weight: 100 },
  { upc: '5', name: 'TV', price: 1299, weight: 1000 },
  { upc: '6', name: 'Lamp', price: 6999, weight: 300 },
  { upc: '7', name: 'Grill', price: 3999, weight: 2000 },
  { upc: '8', name: 'Fridge', price: 100000, weight: 6000 },
  { upc: '9', name: 'Sofa', price: 9999, weight: 800 },
];

const IN_STOCK = new Set(['1', '5', '6', '7', '9']);

const LOREM = {
  a: 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.',
  b: 'Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo. Nemo enim ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugi',
  c: 'sed quia consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt. Neque porro quisquam est, qui dolorem ipsum quia dolor sit amet, consectetur, adipisci velit, sed quia non numquam eius modi tempora incidunt ut labore et dolore magnam aliquam quaerat voluptatem.',
  d: 'Ut enim ad minima veniam, quis nostrum exercitationem ullam corporis suscipit laboriosam, nisi ut aliquid ex ea commodi consequatur? Quis autem',
  e: 'At vero eos et accusamus et iusto odio dignissimos ducimus qui blanditiis praesentium voluptatum deleniti atque corrupti quos dolores et quas molestias excepturi sint occaecati cupiditate non provident, similique sunt in culpa qui officia deserunt mollitia animi, id est laborum et dolorum fuga. Et harum quidem rerum facilis est et expedita distinctio. Nam libero tempore, cum soluta nobis est eligendi optio cumque nihil impedit quo minus id quod maxime placeat facere possimus, omnis voluptas assumenda est, omnis dolor repellendus. Temporibus autem quibusdam et aut officiis debitis aut rerum necessitatibus saepe eveniet ut et voluptates repudiandae sint et molestiae non recusandae. Itaque earum rerum hic tenetur a sapiente delectus, ut aut reiciendis voluptatibus maiores alias consequatur aut perferendis doloribus asperiores repellat.',
};

const REVIEWS: Review[] = [
  { id: '1', body: LOREM.a, productUpc: '1' },
  { id: '2', body: LOREM.b, productUpc: '1' },
  { id: '3', body: LOREM.c, productUpc: '1' },
  { id: '4', body: LOREM.d, productUpc: '1' },
  { id: '5', body: LOREM.a, productUpc: '2' },
  { id: '6', body: LOREM.b, productUpc: '2' },
  { id: '7', body: LOREM.c, productUpc: '2' },
  { id: '8', body: LOREM.d, productUpc: '2' },
  { id: '9', body: LOREM.d, productUpc: '3' },
  { id: '10', body: LOREM.d, productUpc: '4' },
  { id: '11', body: LOREM.e, productUpc: '4' },
];

/** Every author is user 1 as the reviews subgraph knows them, and every user's reviews are the first two (as upstream). */
const AUTHOR = { id: '1', username: 'urigo' };
const USER_REVIEWS = REVIEWS.slice(0, 2);

const FEDERATION = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.3"';

const TYPE_DEFS: Record<PublicSubgraphName, string> = {
  accounts: `
    ${FEDERATION}, import: ["@key", "@shareable"])
    type Query {
      me: User
      user(id: ID!): User
      users: [User]
    }
    type User @key(fields: "id") {
      id: ID!
      name: String
      username: String @shareable
      birthday: Int
    }`,
  inventory: `
    ${FEDERATION}, import: ["@key", "@external", "@requires"])
    type Product @key(fields: "upc") {
      upc: String!
      weight: Int @external
      price: Int @external
      inStock: Boolean
      shippingEstimate: Int @requires(fields: "price weight")
    }`,
  products: `
    ${FEDERATION}, import: ["@key", "@shareable"])
    type Query {
      topProducts(first: Int = 5): [Product]
    }
    type Product @key(fields: "upc") {
      upc: String!
      name: String
      price: Int @shareable
      weight: Int @shareable
    }`,
  reviews: `
    ${FEDERATION}, import: ["@key", "@external", "@provides"])
    type Review @key(fields: "id") {
      id: ID!
      body: String
      product: Product
      author: User @provides(fields: "username")
    }
    type User @key(fields: "id") {
      id: ID!
      username: String @external
      reviews: [Review]
    }
    type Product @key(fields: "upc") {
      upc: String!
      reviews: [Review]
    }`,
};

type Resolvers = GraphQLResolverMap<unknown>;

const RESOLVERS: Record<PublicSubgraphName, Resolvers> = {
  accounts: {
    Query: {
      me: () => USERS[0],
      user: (_: unknown, { id }: { id: string }) => USERS.find((user) => user.id === id) ?? null,
      users: () => USERS,
    },
    User: {
      __resolveReference: ({ id }: { id: string }) => USERS.find((user) => user.id === id) ?? null,
    },
  },
  inventory: {
    Product: {
      __resolveReference: (reference: { upc: string; price?: number | null; weight?: number | null }) => ({
        ...reference,
        inStock: IN_STOCK.has(reference.upc),
      }),
      shippingEstimate: ({ price, weight }: { price?: number | null; weight?: number | null }) => {
        if (price == null) return null;
        if (price > 1000) return 0;
        return weight == null ? null : Math.trunc(weight / 2);
      },
    },
  },
  products: {
    Query: {
      topProducts: (_: unknown, { first }: { first?: number | null }) => PRODUCTS.slice(0, first ?? 5),
    },
    Product: {
      __resolveReference: ({ upc }: { upc: string }) => PRODUCTS.find((product) => product.upc === upc) ?? null,
    },
  },
  reviews: {
    Review: {
      __resolveReference: ({ id }: { id: string }) => REVIEWS.find((review) => review.id === id) ?? null,
      product: (review: Review) => ({ upc: review.productUpc }),
      author: () => AUTHOR,
    },
    User: {
      __resolveReference: ({ id }: { id: string }) => ({ id, username: 'user' }),
      reviews: () => USER_REVIEWS,
    },
    Product: {
      __resolveReference: ({ upc }: { upc: string }) => ({ upc }),
      reviews: ({ upc }: { upc: string }) => REVIEWS.filter((review) => review.productUpc === upc),
    },
  },
};

export function publicSubgraphTypeDefs(name: PublicSubgraphName): string {
  return TYPE_DEFS[name];
}

export function publicSubgraphSchema(name: PublicSubgraphName): GraphQLSchema {
  return buildSubgraphSchema({ typeDefs: parse(TYPE_DEFS[name]), resolvers: RESOLVERS[name] });
}
