import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  createCertificateAuthority,
  HeptadError,
  issueServerCertificate,
  writeFileAtomic,
} from '@heptad/protocol';
import pino, { type Logger } from 'pino';
import { buildApp } from './app.ts';
import type { ServiceConfig } from './config.ts';
import { ErrorReportRetention } from './error-reports/retention.ts';
import type { App } from './http/deps.ts';
import { FsBlobStore } from './images/blob-store.ts';
import { KeyStore } from './keys/key-store.ts';
import { connect } from './store/connect.ts';
import { Store } from './store/store.ts';

export const PLATFORM_CA_FILE = 'platform-ca.pem';
export const PLATFORM_CA_KEY_FILE = 'platform-ca.key.sealed';
export const OPERATOR_TOKEN_FILE = 'operator-token';
export const MASTER_KEY_FILE = 'master-key';
export const PLATFORM_CA_DAYS = 3650;
export const SERVER_CERT_DAYS = 397;

export interface RunningService {
  readonly app: App;
  readonly url: string;
  /** mqtts://HOST:PORT of the embedded broker, or null when it is off */
  readonly mqttUrl: string | null;
  readonly dataDir: string;
  readonly caPath: string | null;
  readonly operatorTokenPath: string;
  /** true when this start created the operator (first start) */
  readonly firstStart: boolean;
  close(): Promise<void>;
}

export interface StartOptions {
  readonly clock?: () => Date;
  readonly logger?: Logger;
  readonly env?: NodeJS.ProcessEnv;
}

function ensureDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
  } catch (cause) {
    throw new HeptadError('DATA_DIR_UNUSABLE', `data directory ${dir} cannot be used`, { cause });
  }
}

function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv): Buffer {
  const fromEnv = env['HEPTAD_MASTER_KEY'];
  if (fromEnv) {
    const key = Buffer.from(fromEnv, 'base64');
    if (key.length !== 32)
      throw new HeptadError('CONFIG_INVALID', 'HEPTAD_MASTER_KEY must be 32 bytes, base64');
    return key;
  }
  const path = join(dataDir, MASTER_KEY_FILE);
  if (!existsSync(path)) writeFileAtomic(path, randomBytes(32).toString('base64'), 0o600);
  const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
  if (key.length !== 32)
    throw new HeptadError('CONFIG_INVALID', `${path} does not hold a 32-byte base64 key`);
  return key;
}

/** The platform CA: created on first start, its key sealed under the master key. */
async function loadPlatformCa(dataDir: string, keys: KeyStore, now: Date) {
  const certPath = join(dataDir, PLATFORM_CA_FILE);
  const keyPath = join(dataDir, PLATFORM_CA_KEY_FILE);
  if (!existsSync(certPath) || !existsSync(keyPath)) {
    const ca = await createCertificateAuthority({
      commonName: 'Heptad Platform CA',
      now,
      validityDays: PLATFORM_CA_DAYS,
    });
    writeFileAtomic(keyPath, keys.seal(ca.keyPkcs8, 'platform-ca'), 0o600);
    writeFileAtomic(certPath, ca.certPem, 0o644);
  }
  return {
    certPath,
    ca: {
      certPem: readFileSync(certPath, 'utf8'),
      keyPkcs8: keys.open(readFileSync(keyPath), 'platform-ca'),
    },
  };
}

/** How often `heptad serve` re-signs TUF metadata that is due (reads also re-sign lazily). */
export const TUF_RENEW_INTERVAL_MS = 10 * 60_000;

/** Starts the security service: data folder, store, operator, platform CA, TLS listener. */
export async function startService(
  config: ServiceConfig,
  options: StartOptions = {},
): Promise<RunningService> {
  const clock = options.clock ?? (() => new Date());
  const env = options.env ?? process.env;
  const logger = options.logger ?? pino({ level: config.logLevel });
  ensureDataDir(config.dataDir);
  const masterKey = loadMasterKey(config.dataDir, env);
  const keys = new KeyStore(masterKey);

  const connection = await connect({ url: config.db });
  const store = new Store(connection.db, connection.dialect, connection.sync);
  try {
    const tokenPath = join(config.dataDir, OPERATOR_TOKEN_FILE);
    const created = await store.transaction((s) => s.platform().users.createOperatorIfMissing(clock()));
    if (created) {
      writeFileAtomic(tokenPath, `${created.token}\n`, 0o600);
    } else if (!existsSync(tokenPath)) {
      const token = await store.transaction((s) => s.platform().users.rotateOperatorToken(clock()));
      writeFileAtomic(tokenPath, `${token}\n`, 0o600);
      logger.warn({ tokenPath }, 'operator token file was missing; issued a new operator token');
    }

    let https: { key: string; cert: string } | null = null;
    let caPath: string | null = null;
    // The MQTT listener is TLS even when the API is plain HTTP (development): it needs the certificate too.
    if (!config.insecureHttp || config.mqttListen) {
      const { ca, certPath } = await loadPlatformCa(config.dataDir, keys, clock());
      caPath = certPath;
      const hosts = new Set(['localhost', '127.0.0.1', '::1', ...config.tlsHosts]);
      for (const h of [config.listen.host, config.mqttListen?.host])
        if (h !== undefined && !['0.0.0.0', '::'].includes(h)) hosts.add(h);
      const server = await issueServerCertificate({
        ca,
        hosts: [...hosts],
        now: clock(),
        validityDays: SERVER_CERT_DAYS,
      });
      https = { key: server.keyPem, cert: `${server.certPem.trim()}\n${ca.certPem.trim()}\n` };
    }

    const serverTls = https;
    if (config.insecureHttp) https = null;
    const mqtt =
      config.mqttListen && serverTls
        ? { ...config.mqttListen, tls: serverTls, maxPacketSize: config.mqttMaxPacketSize }
        : null;
    const blobs = new FsBlobStore(join(config.dataDir, 'blobs'));
    const app = await buildApp({
      store,
      clock,
      logger,
      bodyLimit: config.bodyLimit,
      https,
      keys,
      blobs,
      mqtt,
      mqttPublicUrl: config.mqttPublicUrl,
      tufRenewIntervalMs: TUF_RENEW_INTERVAL_MS,
      errorReports: {
        retentionDays: config.reportRetentionDays,
        ratePerMinute: config.reportRatePerMinute,
        rateBurst: config.reportRateBurst,
      },
    });
    await app.listen({ host: config.listen.host, port: config.listen.port });
    const retention = new ErrorReportRetention(store, clock, config.reportRetentionDays, logger);
    retention.start();
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.listen.port;
    const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
    const url = `${config.insecureHttp ? 'http' : 'https'}://${host}:${port}`;
    const mqttUrl = app.broker
      ? `mqtts://${config.mqttListen?.host.includes(':') ? `[${config.mqttListen.host}]` : config.mqttListen?.host}:${app.broker.port}`
      : null;
    logger.info(
      { url, mqttUrl, store: connection.dialect, dataDir: config.dataDir },
      'heptad service listening',
    );
    return {
      app,
      url,
      mqttUrl,
      dataDir: config.dataDir,
      caPath,
      operatorTokenPath: tokenPath,
      firstStart: created !== null,
      async close() {
        await retention.stop();
        await app.close();
        await connection.close();
      },
    };
  } catch (e) {
    await connection.close();
    throw e;
  }
}
