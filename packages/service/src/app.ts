import { randomBytes, randomUUID } from 'node:crypto';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { HeptadError } from '@heptad/protocol';
import Fastify, { type FastifyServerOptions, LogController } from 'fastify';
import type { Logger } from 'pino';
import { AttestationService } from './attestation/attestation-service.ts';
import { NonceIssuer } from './attestation/nonce-store.ts';
import { attestationRoutes } from './attestation/routes.ts';
import { auditRoutes } from './audit/routes.ts';
import { MqttBroker, type MqttBrokerOptions, NO_SESSIONS } from './broker/mqtt-broker.ts';
import { capabilityRoutes } from './capabilities/routes.ts';
import { deploymentRoutes } from './deployments/routes.ts';
import { deviceRoutes } from './devices/routes.ts';
import { DEFAULT_ERROR_REPORT_OPTIONS, type ErrorReportOptions } from './error-reports/ingest.ts';
import { errorReportRoutes } from './error-reports/routes.ts';
import { createAuthenticator } from './http/auth.ts';
import type { App, RouteDeps } from './http/deps.ts';
import { operationsRoutes } from './http/operations.ts';
import { sendProblem, toHeptadError } from './http/problem.ts';
import { Problem } from './http/schemas.ts';
import { type BlobStore, MemoryBlobStore } from './images/blob-store.ts';
import { TenantImageKeys } from './images/image-keys.ts';
import { ImageService } from './images/image-service.ts';
import { imageRoutes } from './images/routes.ts';
import { KeyStore } from './keys/key-store.ts';
import { TenantPki } from './pki/tenant-pki.ts';
import { productRoutes } from './products/routes.ts';
import { runtimeReleaseRoutes } from './runtime-releases/routes.ts';
import type { Store } from './store/store.ts';
import { tenantRoutes } from './tenants/routes.ts';
import { tufRoutes } from './tuf/routes.ts';
import { type TufOptions, TufService } from './tuf/tuf-service.ts';
import { updateRoutes } from './updates/routes.ts';

export const DEFAULT_BODY_LIMIT = 1024 * 1024;
export const API_VERSION = '0.1.0';

export interface AppOptions {
  readonly store: Store;
  readonly clock?: () => Date;
  /** pino logger; silent when omitted (libraries default to silence). */
  readonly logger?: Logger;
  readonly bodyLimit?: number;
  readonly https?: { key: string; cert: string } | null;
  /** seals the service's private keys (tenant CAs); an ephemeral one when omitted (tests) */
  readonly keys?: KeyStore;
  /** where image files live (serve: DATA/blobs); in memory when omitted */
  readonly blobs?: BlobStore;
  /** the embedded MQTT broker: started when the app is ready, stopped when it closes; none when omitted */
  readonly mqtt?: MqttBrokerOptions | null;
  /** the broker devices are told at attestation; default: the embedded broker's address (none when it is off) */
  readonly mqttPublicUrl?: string | null;
  /** error-report limits and retention (defaults: DEFAULT_ERROR_REPORT_OPTIONS) */
  readonly errorReports?: Partial<ErrorReportOptions>;
  /** update metadata expiry and caching (defaults: DEFAULT_TUF_OPTIONS) */
  readonly tuf?: Partial<TufOptions>;
  /** re-sign due TUF metadata this often while the app runs (serve: 10 min); off when omitted */
  readonly tufRenewIntervalMs?: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** the embedded MQTT broker, or null when it is off */
    broker: MqttBroker | null;
    /** the update metadata (TUF) repositories */
    tuf: TufService;
  }
}

/** The composition root of the HTTP service: every route and hook is wired here, once. */
export async function buildApp(options: AppOptions): Promise<App> {
  const clock = options.clock ?? (() => new Date());
  const fastifyOptions: FastifyServerOptions = {
    ...(options.logger ? { loggerInstance: options.logger } : {}),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 256 },
    ajv: {
      customOptions: {
        // Wrong types are refused, not coerced; unknown fields are refused, not dropped.
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: false,
        allErrors: true,
      },
    },
  };
  // One App type for both transports: the HTTPS server is a node:http-compatible server.
  // Devices authenticate with their tenant-CA certificate on the same listener (device routes,
  // http/device-auth.ts): a certificate is asked for but not required, and not verified by TLS
  // against a fixed list — tenant CAs come and rotate at run time, so device-auth.ts checks it.
  const instance = options.https
    ? Fastify({
        ...fastifyOptions,
        https: { ...options.https, requestCert: true, rejectUnauthorized: false },
      } as FastifyServerOptions)
    : Fastify(fastifyOptions);
  const app = instance.withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  const auth = createAuthenticator(options.store, clock);
  const broker = options.mqtt
    ? new MqttBroker(options.mqtt, { store: options.store, clock, tokens: auth, logger: options.logger })
    : null;
  const keys = options.keys ?? new KeyStore(randomBytes(32));
  const blobs = options.blobs ?? new MemoryBlobStore();
  const tuf = new TufService(options.store, keys, blobs, clock, options.tuf, options.logger);
  const deps: RouteDeps = { store: options.store, clock, sessions: broker ?? NO_SESSIONS, updates: tuf };
  app.decorate('broker', broker);
  app.decorate('tuf', tuf);
  const renewEvery = options.tufRenewIntervalMs;
  if (renewEvery !== undefined) {
    app.addHook('onReady', async () => tuf.start(renewEvery));
    app.addHook('onClose', async () => tuf.stop());
  }
  if (broker) {
    app.addHook('onReady', () => broker.start());
    app.addHook('onClose', () => broker.stop());
  }

  app.decorateRequest('principal', null);
  app.decorateRequest('device', null);
  app.addHook('onRoute', (route) => {
    if (!route.config?.access && !route.url.startsWith('/docs')) {
      throw new Error(`route ${route.method} ${route.url} declares no access rule`);
    }
  });
  // Authenticate and authorize before the body is read: an anonymous caller cannot make the
  // service parse (or store) anything.
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id);
    const url = req.routeOptions.url;
    if (url === undefined || url.startsWith('/docs')) return done(); // 404 handler, API reference
    let pending: Promise<void> | undefined;
    try {
      pending = auth.authenticate(req);
    } catch (e) {
      return done(e as Error);
    }
    if (pending) pending.then(() => done(), done);
    else done();
  });

  app.setErrorHandler((error, req, reply) => {
    const e = toHeptadError(
      (error as { heptadCode?: unknown }).heptadCode === 'SERVICE_NOT_READY'
        ? new HeptadError('SERVICE_NOT_READY', undefined, { cause: error })
        : error,
    );
    if (e.status >= 500) {
      // Who was calling, added here rather than by a child logger on every request (that cost 3 %).
      const p = req.principal;
      req.log.error({ err: error, code: e.code, userId: p?.userId, tenantId: p?.tenantId }, 'request failed');
    }
    return sendProblem(reply, req, e);
  });
  app.setNotFoundHandler((req, reply) => sendProblem(reply, req, new HeptadError('ROUTE_NOT_FOUND')));

  app.addSchema(Problem);
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Heptad security service',
        version: API_VERSION,
        description:
          'Tenants, products, device groups and devices of the Heptad platform. Every call needs a bearer token ' +
          '(Authorization: Bearer hpt_…) except /healthz, /readyz and the documents. Errors are RFC 9457 ' +
          'problem+json with a stable `code` (see docs/errors.md).',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: false } });

  app.get('/openapi.json', { config: { access: { kind: 'public' } }, schema: { hide: true } }, async () =>
    app.swagger(),
  );

  operationsRoutes(app, deps);
  tenantRoutes(app, deps);
  productRoutes(app, deps);
  deviceRoutes(app, deps);
  auditRoutes(app, deps);
  errorReportRoutes(app, { ...deps, reports: { ...DEFAULT_ERROR_REPORT_OPTIONS, ...options.errorReports } });
  const pki = new TenantPki(options.store.db, keys, clock, broker ? () => broker.reloadTrust() : undefined);
  const nonces = new NonceIssuer(keys.derive('attestation-nonce'));
  const attestation = new AttestationService(options.store, nonces, pki, clock, options.logger);
  // What a device is told at attestation (docs/broker.md §The device's session): null when
  // there is no broker. A broker listening on every address is named by the host the device used
  // to reach this service (a name its server certificate carries, as the broker's does).
  const brokerUrl = (requestHost: string): string | null => {
    if (!broker || !options.mqtt) return null;
    if (options.mqttPublicUrl) return options.mqttPublicUrl;
    const h = ['0.0.0.0', '::'].includes(options.mqtt.host) ? requestHost : options.mqtt.host;
    return `mqtts://${h.includes(':') && !h.startsWith('[') ? `[${h}]` : h}:${broker.port}`;
  };
  attestationRoutes(app, { ...deps, attestation, pki, brokerUrl });
  const images = new ImageService(
    options.store,
    new TenantImageKeys(options.store.db, keys, clock),
    blobs,
    tuf,
  );
  imageRoutes(app, { ...deps, images });
  deploymentRoutes(app, deps);
  runtimeReleaseRoutes(app, { ...deps, blobs });
  capabilityRoutes(app, deps);
  updateRoutes(app, deps);
  tufRoutes(app, { ...deps, tuf, blobs });
  return app;
}
