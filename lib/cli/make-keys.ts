/** Writes the JWT signing key pair to .data/keys/ (used by docker-compose.yml and by `npm start`). */
import { resolve } from 'node:path';
import { loadOrCreateJwtKeys } from '../jwt-keys.js';

const dataDir = resolve(process.env.DATA_DIR ?? '.data');
loadOrCreateJwtKeys(dataDir);
console.log(`JWT keys are in ${dataDir}/keys (jwt-private.pem for the auth service, jwt-public.pem for the router).`);
