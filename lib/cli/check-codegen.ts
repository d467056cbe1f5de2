/** Fails when a subgraph's generated resolver types differ from what codegen.ts makes of its schema. */
import { generate } from '@graphql-codegen/cli';
import { readFileSync, existsSync } from 'node:fs';
import config from '../../codegen.js';

const outputs = (await generate({ ...config, silent: true }, false)) as { filename: string; content: string }[];
const stale = outputs.filter((o) => !existsSync(o.filename) || readFileSync(o.filename, 'utf8') !== o.content);
if (stale.length > 0) {
  console.error(`Generated resolver types are stale: ${stale.map((o) => o.filename).join(', ')}. Run \`npm run codegen\` and commit.`);
  process.exit(1);
}
console.log(`Generated resolver types are up to date (${outputs.length} files).`);
