import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { prepareOwn } from './benchmarks/gateway/index.js';
import { stopAll } from './benchmarks/gateway/processes.js';
const dir = mkdtempSync(join(tmpdir(), 'own-'));
const prepared = await prepareOwn({ quick: true, log: console.error, cpus: { load: '1', sut: '0' } }, dir, 1);
try {
  for (const c of prepared.contenders) {
    const t = Date.now();
    const r = await fetch(c.url, { method: 'POST', headers: { 'content-type': 'application/json', ...c.clientHeaders }, body: prepared.body });
    console.log(c.id, r.status, (await r.text()).length, Date.now() - t, 'ms');
    writeFileSync('/tmp/own-body.json', prepared.body);
    const out = spawnSync('npx', ['autocannon', '-c', '10', '-d', '5', '-m', 'POST', '-H', 'content-type=application/json', ...Object.entries(c.clientHeaders).flatMap(([k, v]) => ['-H', `${k}=${v}`]), '-i', '/tmp/own-body.json', c.url], { encoding: 'utf8' }); console.log((out.stdout + out.stderr).split('\n').filter(l => /Latency|Req\/Sec|requests in|non 2xx|errors/.test(l)).join('\n'));
  }
} finally { await prepared.cleanup(); await stopAll(); }
import { writeFileSync } from 'node:fs';
