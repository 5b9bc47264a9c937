import { resolve } from 'node:path';
import type { RawConfig } from '@heptad/service';
import type { CommandSpec } from './spec.ts';

export const serveCommand: CommandSpec = {
  path: ['serve'],
  summary: 'Run the security service (SQLite + local files by default; PostgreSQL with --db postgres://…)',
  description:
    'First start creates the data folder, the platform operator (its API token in DATA/operator-token, mode 0600) ' +
    'and the platform CA (DATA/platform-ca.pem, which the CLI and devices trust). Later starts reuse them. ' +
    'Settings come from --config FILE, then HEPTAD_* variables, then flags. Stops cleanly on Ctrl-C.',
  args: [],
  options: [
    {
      name: 'data',
      type: 'string',
      valueName: 'DIR',
      description: 'data folder (default ./heptad-data; HEPTAD_DATA)',
    },
    {
      name: 'listen',
      type: 'string',
      valueName: 'HOST:PORT',
      description: 'address to listen on (default 127.0.0.1:8443)',
    },
    {
      name: 'db',
      type: 'string',
      valueName: 'URL',
      description: 'postgres://… to use PostgreSQL (default: SQLite in DATA)',
    },
    { name: 'insecure-http', type: 'boolean', description: 'plain HTTP, loopback only, for development' },
    {
      name: 'body-limit',
      type: 'string',
      valueName: 'BYTES',
      description: 'largest request body (default 1048576)',
    },
    {
      name: 'log-level',
      type: 'string',
      valueName: 'LEVEL',
      description: 'fatal|error|warn|info|debug|silent (default info)',
    },
    {
      name: 'tls-host',
      type: 'string',
      valueName: 'HOST',
      description: 'extra name or IP for the server certificate',
      multiple: true,
    },
    {
      name: 'mqtt-listen',
      type: 'string',
      valueName: 'HOST:PORT|off',
      description:
        'the embedded MQTT broker (TLS, device certificates) (default 127.0.0.1:8883; off: no broker)',
    },
    {
      name: 'mqtt-public-url',
      type: 'string',
      valueName: 'mqtts://HOST:PORT',
      description:
        'the broker devices are told to use at attestation (default: the embedded broker at its listen address)',
    },
    {
      name: 'mqtt-max-packet-size',
      type: 'string',
      valueName: 'BYTES',
      description: 'largest MQTT packet the broker reads (default 262144)',
    },
    {
      name: 'report-retention-days',
      type: 'string',
      valueName: 'DAYS',
      description: 'days error reports are kept (default 14)',
    },
    {
      name: 'report-rate-per-minute',
      type: 'string',
      valueName: 'N',
      description: 'error reports a device may send per minute after its burst (default 100)',
    },
    {
      name: 'report-rate-burst',
      type: 'string',
      valueName: 'N',
      description: 'error reports a device may send at once (default 1000)',
    },
    { name: 'config', type: 'string', valueName: 'FILE', description: 'JSON config file (no secrets in it)' },
  ],
  service: false,
  examples: [
    'heptad serve',
    'heptad serve --data /var/lib/heptad --db postgres://heptad@db/heptad --listen 0.0.0.0:8443',
  ],
  async run(ctx) {
    // Loaded here, not at the top: other commands (device run, above all) start without the
    // service's dependencies.
    const [{ fromEnv, readConfigFile, resolveConfig, startService }, { default: pino }] = await Promise.all([
      import('@heptad/service'),
      import('pino'),
    ]);
    const o = ctx.options;
    const file = typeof o['config'] === 'string' ? readConfigFile(resolve(ctx.io.cwd, o['config'])) : {};
    const flags: RawConfig = {
      data: o['data'] as string | undefined,
      listen: o['listen'] as string | undefined,
      db: o['db'] as string | undefined,
      insecureHttp: o['insecure-http'] === true ? true : undefined,
      bodyLimit: o['body-limit'] as string | undefined,
      logLevel: o['log-level'] as string | undefined,
      tlsHosts: o['tls-host'] as string[] | undefined,
      mqttListen: o['mqtt-listen'] as string | undefined,
      mqttMaxPacketSize: o['mqtt-max-packet-size'] as string | undefined,
      mqttPublicUrl: o['mqtt-public-url'] as string | undefined,
      reportRetentionDays: o['report-retention-days'] as string | undefined,
      reportRatePerMinute: o['report-rate-per-minute'] as string | undefined,
      reportRateBurst: o['report-rate-burst'] as string | undefined,
    };
    if (typeof flags.data === 'string') flags.data = resolve(ctx.io.cwd, flags.data);
    const config = resolveConfig(file, fromEnv(ctx.io.env), flags);
    // Logs go to stderr as JSON lines; stdout carries only the command's own output.
    const logger = pino({ level: config.logLevel }, pino.destination(2));
    const svc = await startService(config, { logger, env: ctx.io.env });
    const wait = new Promise<void>((done) => {
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        logger.info('stopping');
        svc.close().then(done, (e: unknown) => {
          logger.error({ err: e }, 'error while stopping');
          done();
        });
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    const info = {
      url: svc.url,
      mqttUrl: svc.mqttUrl,
      dataDir: svc.dataDir,
      store: config.db.startsWith('postgres') ? 'postgres' : 'sqlite',
      caFile: svc.caPath,
      operatorTokenFile: svc.operatorTokenPath,
      firstStart: svc.firstStart,
    };
    const ca = svc.caPath ? ` --ca ${svc.caPath}` : '';
    const text = [
      `Heptad security service listening on ${svc.url} (${info.store}, data in ${svc.dataDir})`,
      `MQTT broker:    ${svc.mqttUrl ?? 'off'}${svc.mqttUrl ? ' (TLS; devices: their certificate; cloud clients: an API token as password)' : ''}`,
      `Operator token: ${svc.operatorTokenPath} (mode 0600; never printed)`,
      ...(svc.caPath ? [`Platform CA:    ${svc.caPath} (trust this in the CLI and on devices)`] : []),
      `Try:            ./heptad login --url ${svc.url} --token "$(cat ${svc.operatorTokenPath})"${ca}`,
      `API reference:  ${svc.url}/docs   OpenAPI: ${svc.url}/openapi.json`,
      'Ctrl-C stops the service.',
      '',
    ].join('\n');
    return { data: info, text, wait };
  },
};
