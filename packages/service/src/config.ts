import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { HeptadError } from '@heptad/protocol';
import { DEFAULT_BODY_LIMIT } from './app.ts';
import {
  DEFAULT_MQTT_MAX_PACKET_SIZE,
  MAX_MQTT_MAX_PACKET_SIZE,
  MIN_MQTT_MAX_PACKET_SIZE,
} from './broker/mqtt-broker.ts';
import {
  DEFAULT_REPORT_RATE_BURST,
  DEFAULT_REPORT_RATE_PER_MINUTE,
  DEFAULT_REPORT_RETENTION_DAYS,
} from './error-reports/ingest.ts';

export const DEFAULT_DATA_DIR = './heptad-data';
export const DEFAULT_LISTEN = '127.0.0.1:8443';
export const DEFAULT_LOG_LEVEL = 'info';
export const DEFAULT_MQTT_LISTEN = '127.0.0.1:8883';
export const MAX_BODY_LIMIT = 64 * 1024 * 1024;

export interface ServiceConfig {
  readonly dataDir: string;
  readonly listen: { readonly host: string; readonly port: number };
  /** sqlite path or postgres:// URL */
  readonly db: string;
  readonly insecureHttp: boolean;
  readonly bodyLimit: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'silent';
  /** extra DNS names / IPs for the server certificate */
  readonly tlsHosts: readonly string[];
  /** the embedded MQTT broker's TLS listener; null when it is off (`--mqtt-listen off`) */
  readonly mqttListen: { readonly host: string; readonly port: number } | null;
  /** largest MQTT packet the broker reads */
  readonly mqttMaxPacketSize: number;
  /**
   * the broker URL devices are told at attestation (`mqtts://HOST:PORT`): a public name of the
   * embedded broker, or another broker that trusts the tenant CAs. null: the embedded broker's own
   * address (its listen host, or the host name the device used for the service when it listens on
   * every address). Ignored when the broker is off.
   */
  readonly mqttPublicUrl: string | null;
  /** error reports: days kept (1–3650) */
  readonly reportRetentionDays: number;
  /** error reports per device and minute after the burst (1–1000000), and the burst (1–1000000) */
  readonly reportRatePerMinute: number;
  readonly reportRateBurst: number;
}

/** Settings as they arrive from a source, before validation. */
export interface RawConfig {
  data?: string | undefined;
  listen?: string | undefined;
  db?: string | undefined;
  insecureHttp?: boolean | undefined;
  bodyLimit?: string | number | undefined;
  logLevel?: string | undefined;
  tlsHosts?: string | readonly string[] | undefined;
  mqttListen?: string | undefined;
  mqttMaxPacketSize?: string | number | undefined;
  mqttPublicUrl?: string | undefined;
  reportRetentionDays?: string | number | undefined;
  reportRatePerMinute?: string | number | undefined;
  reportRateBurst?: string | number | undefined;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'silent'] as const;

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function bad(setting: string, problem: string): HeptadError {
  return new HeptadError('CONFIG_INVALID', `${setting} ${problem}`, {
    fields: [{ field: setting, problem }],
  });
}

export function parseListen(
  s: string,
  setting = '--listen',
  example = '127.0.0.1:8443',
): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(s);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!host || !Number.isInteger(port) || port > 65535)
    throw bad(setting, `must be HOST:PORT (e.g. ${example})`);
  if (!isIP(host) && !/^[A-Za-z0-9.-]{1,253}$/.test(host)) throw bad(setting, 'has an invalid host');
  return { host, port };
}

/** Reads the optional JSON config file (never holds secrets). */
export function readConfigFile(path: string): RawConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new HeptadError('CONFIG_INVALID', `config file ${path} cannot be read`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new HeptadError('CONFIG_INVALID', `config file ${path} is not valid JSON`, { cause });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw bad('config file', 'must be a JSON object');
  const allowed = new Set([
    'data',
    'listen',
    'db',
    'insecureHttp',
    'bodyLimit',
    'logLevel',
    'tlsHosts',
    'mqttListen',
    'mqttMaxPacketSize',
    'mqttPublicUrl',
    'reportRetentionDays',
    'reportRatePerMinute',
    'reportRateBurst',
  ]);
  for (const k of Object.keys(json))
    if (!allowed.has(k)) throw bad(`config file key "${k}"`, 'is not a setting');
  return json as RawConfig;
}

export function fromEnv(env: NodeJS.ProcessEnv): RawConfig {
  return {
    data: env['HEPTAD_DATA'],
    listen: env['HEPTAD_LISTEN'],
    db: env['HEPTAD_DB'],
    insecureHttp: env['HEPTAD_INSECURE_HTTP'] === undefined ? undefined : env['HEPTAD_INSECURE_HTTP'] === '1',
    bodyLimit: env['HEPTAD_BODY_LIMIT'],
    logLevel: env['HEPTAD_LOG_LEVEL'],
    tlsHosts: env['HEPTAD_TLS_HOSTS'],
    mqttListen: env['HEPTAD_MQTT_LISTEN'],
    mqttMaxPacketSize: env['HEPTAD_MQTT_MAX_PACKET_SIZE'],
    mqttPublicUrl: env['HEPTAD_MQTT_PUBLIC_URL'],
    reportRetentionDays: env['HEPTAD_REPORT_RETENTION_DAYS'],
    reportRatePerMinute: env['HEPTAD_REPORT_RATE_PER_MINUTE'],
    reportRateBurst: env['HEPTAD_REPORT_RATE_BURST'],
  };
}

/** Merges sources (later wins: file → env → flags), validates, and freezes. */
export function resolveConfig(...sources: RawConfig[]): ServiceConfig {
  const merged: RawConfig = {};
  for (const s of sources) {
    for (const [k, v] of Object.entries(s)) if (v !== undefined) (merged as Record<string, unknown>)[k] = v;
  }
  const dataDir = resolve(merged.data ?? DEFAULT_DATA_DIR);
  const listen = parseListen(merged.listen ?? DEFAULT_LISTEN);
  const db = merged.db ?? `${dataDir}/heptad.sqlite`;
  if (/^[a-z]+:\/\//.test(db) && !/^postgres(ql)?:\/\//.test(db))
    throw bad('--db', 'must be postgres://… or a SQLite file path');
  const insecureHttp = merged.insecureHttp === true;
  // Plain HTTP carries bearer tokens in clear: allowed only on loopback, for development.
  if (insecureHttp && !isLoopback(listen.host))
    throw bad('--insecure-http', 'is allowed only on a loopback address');
  const bodyLimit = Number(merged.bodyLimit ?? DEFAULT_BODY_LIMIT);
  if (!Number.isInteger(bodyLimit) || bodyLimit < 1024 || bodyLimit > MAX_BODY_LIMIT) {
    throw bad('--body-limit', `must be an integer from 1024 to ${MAX_BODY_LIMIT} bytes`);
  }
  const logLevel = merged.logLevel ?? DEFAULT_LOG_LEVEL;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel))
    throw bad('--log-level', `must be one of ${LOG_LEVELS.join(', ')}`);
  const hostsRaw = merged.tlsHosts ?? [];
  const tlsHosts = (typeof hostsRaw === 'string' ? hostsRaw.split(',') : [...hostsRaw])
    .map((h) => h.trim())
    .filter(Boolean);
  for (const h of tlsHosts)
    if (!isIP(h) && !/^[A-Za-z0-9.-]{1,253}$/.test(h))
      throw bad('--tls-host', `"${h}" is not a host name or IP`);
  // An API on an ephemeral port (tests, side-by-side instances) gets an ephemeral broker port too,
  // so two such services never fight over 8883.
  const mqttRaw = merged.mqttListen ?? (listen.port === 0 ? '127.0.0.1:0' : DEFAULT_MQTT_LISTEN);
  const mqttListen =
    mqttRaw === 'off' ? null : parseListen(mqttRaw, '--mqtt-listen', '127.0.0.1:8883 or off');
  if (
    mqttListen &&
    !insecureHttp &&
    mqttListen.host === listen.host &&
    mqttListen.port === listen.port &&
    listen.port !== 0
  )
    throw bad('--mqtt-listen', 'must differ from --listen');
  const mqttMaxPacketSize = Number(merged.mqttMaxPacketSize ?? DEFAULT_MQTT_MAX_PACKET_SIZE);
  if (
    !Number.isInteger(mqttMaxPacketSize) ||
    mqttMaxPacketSize < MIN_MQTT_MAX_PACKET_SIZE ||
    mqttMaxPacketSize > MAX_MQTT_MAX_PACKET_SIZE
  ) {
    throw bad(
      '--mqtt-max-packet-size',
      `must be an integer from ${MIN_MQTT_MAX_PACKET_SIZE} to ${MAX_MQTT_MAX_PACKET_SIZE} bytes`,
    );
  }
  const mqttPublicUrl = merged.mqttPublicUrl === undefined ? null : parseMqttUrl(merged.mqttPublicUrl);
  const int = (setting: string, value: string | number | undefined, fallback: number, max: number) => {
    const n = Number(value ?? fallback);
    if (!Number.isInteger(n) || n < 1 || n > max) throw bad(setting, `must be an integer from 1 to ${max}`);
    return n;
  };
  const reportRetentionDays = int(
    '--report-retention-days',
    merged.reportRetentionDays,
    DEFAULT_REPORT_RETENTION_DAYS,
    3650,
  );
  const reportRatePerMinute = int(
    '--report-rate-per-minute',
    merged.reportRatePerMinute,
    DEFAULT_REPORT_RATE_PER_MINUTE,
    1_000_000,
  );
  const reportRateBurst = int(
    '--report-rate-burst',
    merged.reportRateBurst,
    DEFAULT_REPORT_RATE_BURST,
    1_000_000,
  );
  return Object.freeze({
    dataDir,
    listen: Object.freeze(listen),
    db,
    insecureHttp,
    bodyLimit,
    logLevel: logLevel as ServiceConfig['logLevel'],
    tlsHosts: Object.freeze(tlsHosts),
    mqttListen: mqttListen && Object.freeze(mqttListen),
    mqttMaxPacketSize,
    mqttPublicUrl,
    reportRetentionDays,
    reportRatePerMinute,
    reportRateBurst,
  });
}

/** `mqtts://HOST:PORT`, nothing else: devices speak only TLS to a broker, and need the port. */
function parseMqttUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw bad('--mqtt-public-url', 'must be mqtts://HOST:PORT');
  }
  if (
    u.protocol !== 'mqtts:' ||
    u.hostname === '' ||
    u.port === '' ||
    u.username !== '' ||
    u.password !== '' ||
    (u.pathname !== '' && u.pathname !== '/') ||
    u.search !== '' ||
    u.hash !== ''
  )
    throw bad('--mqtt-public-url', 'must be mqtts://HOST:PORT');
  return `mqtts://${u.host}`;
}
