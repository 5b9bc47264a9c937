import type { FastifyReply } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { Type } from 'typebox';
import { access } from './auth.ts';
import type { App, RouteDeps } from './deps.ts';
import { errorResponses } from './schemas.ts';

/** Liveness, readiness and Prometheus metrics. Metrics need the operator token. */
export function operationsRoutes(app: App, { store, sessions }: RouteDeps): void {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'heptad_' });
  const requests = new Counter({
    name: 'heptad_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'heptad_http_request_duration_seconds',
    help: 'HTTP request duration by route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });

  new Gauge({
    name: 'heptad_mqtt_sessions',
    help: 'Live sessions on the embedded MQTT broker (devices and cloud clients)',
    registers: [registry],
    collect() {
      this.set(sessions.sessionCount);
    },
  });

  // Label children cached by key: prom-client hashes the label object on every call otherwise.
  // Keys come from route patterns and status codes (bounded), never from raw URLs.
  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(v: number): void }>();
  app.addHook('onResponse', (req, reply: FastifyReply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const status = String(reply.statusCode);
    const ck = `${req.method} ${route} ${status}`;
    let c = counters.get(ck);
    if (!c) {
      c = requests.labels({ method: req.method, route, status });
      counters.set(ck, c);
    }
    c.inc();
    const tk = `${req.method} ${route}`;
    let t = timers.get(tk);
    if (!t) {
      t = duration.labels({ method: req.method, route });
      timers.set(tk, t);
    }
    t.observe(reply.elapsedTime / 1000);
    done();
  });

  app.get(
    '/healthz',
    {
      config: { access: access.public },
      schema: {
        tags: ['operations'],
        summary: 'Liveness',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { access: access.public },
      schema: {
        tags: ['operations'],
        summary: 'Readiness: the store answers',
        response: { 200: Type.Object({ status: Type.Literal('ready') }), ...errorResponses(503) },
      },
    },
    async () => {
      await store.ping().catch((cause: unknown) => {
        throw Object.assign(new Error('store ping failed', { cause }), { heptadCode: 'SERVICE_NOT_READY' });
      });
      return { status: 'ready' as const };
    },
  );

  app.get(
    '/metrics',
    {
      config: { access: access.operator },
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics (operator token)',
        response: errorResponses(),
      },
    },
    async (_req, reply) => {
      const text = await registry.metrics();
      return reply.header('content-type', registry.contentType).send(text);
    },
  );
}
