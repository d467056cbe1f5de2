import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { ROOT } from './support/processes.js';

/**
 * No Docker engine or cluster runs here, so the manifests are checked by parsing them and by
 * comparing their commands with the processes the end-to-end tests start (tests/support/platform.ts).
 */
const ENTRIES: Record<string, string> = {
  auth: 'subgraphs/auth/main.ts',
  agent: 'subgraphs/agent/main.ts',
  task: 'subgraphs/task/main.ts',
  memory: 'subgraphs/memory/main.ts',
  router: 'router/main.ts',
  worker: 'subgraphs/task/worker-main.ts',
};

describe('deployment manifests', () => {
  it('docker-compose.yml runs every service with the same command as the tests, with health checks', () => {
    const compose = YAML.parse(readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true });
    for (const infra of ['postgres', 'redis', 'rabbitmq']) expect(compose.services[infra].healthcheck).toBeDefined();
    for (const [name, entry] of Object.entries(ENTRIES)) {
      const service = compose.services[name];
      expect(service.command, name).toEqual(['node', '--import', 'tsx', entry]);
      expect(existsSync(resolve(ROOT, entry)), entry).toBe(true);
      expect(service.healthcheck.test.join(' '), name).toContain('/readyz');
      for (const key of ['DATABASE_URL', 'REDIS_URL', 'AMQP_URL', 'INTERNAL_SECRET', 'AUTH_URL']) {
        expect(service.environment[key], `${name} ${key}`).toBeTruthy();
      }
    }
    expect(compose.services.router.ports).toEqual(['8000:8000']);
    // The router's young generation, as the subscription benchmark runs it (BENCHMARKS.md).
    expect(compose.services.router.environment.NODE_OPTIONS).toBe('--max-semi-space-size=64');
  });

  it('the Kubernetes manifests parse and run the same processes with probes', () => {
    const docs = YAML.parseAllDocuments(readFileSync(resolve(ROOT, 'deploy/kubernetes/platform.yaml'), 'utf8')).map((d) => d.toJS());
    const deployments = docs.filter((d) => d.kind === 'Deployment');
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(Object.keys(ENTRIES).sort());
    for (const deployment of deployments) {
      const container = deployment.spec.template.spec.containers[0];
      expect(container.command).toEqual(['node', '--import', 'tsx', ENTRIES[deployment.metadata.name]]);
      expect(container.readinessProbe.httpGet.path).toBe('/readyz');
      expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    }
    const router = deployments.find((d) => d.metadata.name === 'router').spec.template.spec.containers[0];
    expect(router.env).toContainEqual({ name: 'NODE_OPTIONS', value: '--max-semi-space-size=64' });
    const services = docs.filter((d) => d.kind === 'Service').map((d) => d.metadata.name);
    expect(services.sort()).toEqual(Object.keys(ENTRIES).filter((name) => name !== 'worker').sort());
  });

  it('supergraph.yaml lists the four subgraphs in rover format', () => {
    const config = YAML.parse(readFileSync(resolve(ROOT, 'supergraph.yaml'), 'utf8'));
    expect(Object.keys(config.subgraphs).sort()).toEqual(['agent', 'auth', 'memory', 'task']);
    for (const spec of Object.values<{ routing_url: string; schema: { file: string } }>(config.subgraphs)) {
      expect(spec.routing_url).toMatch(/^http:\/\/.+\/graphql$/);
      expect(existsSync(resolve(ROOT, spec.schema.file))).toBe(true);
    }
  });
});
