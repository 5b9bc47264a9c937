import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { DeviceState } from '@heptad/device';
import {
  createCertificateAuthority,
  HeptadError,
  issueServerCertificate,
  writeFileAtomic,
} from '@heptad/protocol';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { str } from './args.ts';
import type { ServiceClient } from './client.ts';
import { MOSQUITTO_FILES, renderMosquittoConfig } from './mosquitto-config.ts';
import type { CommandContext, CommandSpec } from './spec.ts';

export const DEFAULT_MQTT_PORT = 8883;
const DEFAULT_MOSQUITTO_MAX_PACKET = 256 * 1024;
const MQTT_CONNECT_TIMEOUT_MS = 10_000;
const SERVER_CERT_DAYS = 397;
const LABEL = /^[A-Za-z0-9._-]{1,64}$/;

function intOption(ctx: CommandContext, name: string, min: number, max: number): number | undefined {
  const v = str(ctx, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max)
    throw new HeptadError('CLI_USAGE', `--${name} must be an integer from ${min} to ${max}`);
  return n;
}

function qosOf(ctx: CommandContext): 0 | 1 {
  return (intOption(ctx, 'qos', 0, 1) ?? 1) as 0 | 1;
}

/** The broker URL: --broker, else the service's host on the MQTT port. */
function brokerUrl(ctx: CommandContext, service: URL): URL {
  const raw = str(ctx, 'broker') ?? `mqtts://${service.hostname}:${DEFAULT_MQTT_PORT}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch (cause) {
    throw new HeptadError('CLI_USAGE', `--broker "${raw}" is not a URL`, { cause });
  }
  if (url.protocol !== 'mqtts:')
    throw new HeptadError('CLI_USAGE', '--broker must be mqtts://HOST:PORT (the broker speaks only TLS)');
  return url;
}

/**
 * Connects as the tenant's cloud client: the API token as MQTT password over TLS, clientId
 * `<tenant id>/<label>`. Resolves on CONNACK 0; a coded error otherwise.
 */
async function connectCloud(ctx: CommandContext, client: ServiceClient): Promise<MqttClient> {
  const { url, token, caPem } = client.connection;
  const me = await client.request<{ id: string }>('GET', '/v1/tenants/current');
  const label = str(ctx, 'client-id') ?? `heptad-cli-${randomBytes(4).toString('hex')}`;
  if (!LABEL.test(label)) throw new HeptadError('CLI_USAGE', '--client-id must be 1–64 of A–Z a–z 0–9 . _ -');
  const broker = brokerUrl(ctx, url);
  const opts: IClientOptions = {
    host: broker.hostname.replace(/^\[|\]$/g, ''),
    port: Number(broker.port || DEFAULT_MQTT_PORT),
    protocol: 'mqtts',
    ...(caPem ? { ca: caPem } : {}),
    clientId: `${me.id}/${label}`,
    username: 'token',
    password: token,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: MQTT_CONNECT_TIMEOUT_MS,
  };
  return new Promise((resolvePromise, reject) => {
    const c = mqtt.connect(opts);
    let settled = false;
    const fail = (e: HeptadError) => {
      if (settled) return;
      settled = true;
      c.end(true);
      reject(e);
    };
    c.once('connect', () => {
      settled = true;
      resolvePromise(c);
    });
    c.once('error', (e: Error & { code?: string | number }) => {
      if (typeof e.code === 'number') {
        fail(new HeptadError('MQTT_CONNECTION_REFUSED', `${broker.host}: ${e.message} (CONNACK ${e.code})`));
      } else {
        fail(
          new HeptadError('MQTT_CONNECTION_FAILED', `${broker.host}: ${e.code ?? e.message}`, { cause: e }),
        );
      }
    });
    c.once('close', () =>
      fail(new HeptadError('MQTT_CONNECTION_FAILED', `${broker.host} closed the connection`)),
    );
  });
}

/** Ends the connection without waiting on a broker that already closed it (endAsync would never settle). */
async function closeQuietly(c: MqttClient): Promise<void> {
  if (!c.connected) {
    c.end(true);
    return;
  }
  await Promise.race([c.endAsync(), new Promise<void>((r) => setTimeout(r, 2_000).unref())]);
  c.end(true);
}

const MQTT_OPTIONS = [
  {
    name: 'broker',
    type: 'string',
    valueName: 'URL',
    description: `mqtts://HOST:PORT (default: the service host, port ${DEFAULT_MQTT_PORT})`,
  },
  { name: 'qos', type: 'string', valueName: '0|1', description: 'quality of service (default 1)' },
  {
    name: 'client-id',
    type: 'string',
    valueName: 'LABEL',
    description: 'clientId label; the clientId is <tenant id>/LABEL (default heptad-cli-<random>)',
  },
] as const;

export const BROKER_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['mqtt', 'pub'],
    summary:
      "Publish one message to your tenant's devices or groups over the broker (token as MQTT password)",
    description:
      'Connects to the broker as a cloud client of your tenant: the API token is the MQTT password, over TLS ' +
      'trusting the profile CA. Topics: devices/<id>/… and groups/<id>/… of your tenant (Contributor or above).',
    args: [
      { name: 'TOPIC', description: 'e.g. devices/<device id>/commands', required: true },
      { name: 'MESSAGE', description: 'the payload (UTF-8 text)', required: true },
    ],
    options: MQTT_OPTIONS,
    service: true,
    examples: ['heptad mqtt pub devices/3f1c…/commands reboot'],
    async run(ctx) {
      const qos = qosOf(ctx);
      const topic = String(str(ctx, 'TOPIC'));
      const c = await connectCloud(ctx, await ctx.client());
      try {
        // A refused PUBLISH closes the connection (MQTT 3.1.1 has no per-message refusal): at QoS 1
        // that shows as the missing PUBACK.
        await new Promise<void>((ok, fail) => {
          c.once('close', () => fail(new HeptadError('MQTT_PUBLISH_REFUSED', `the broker refused ${topic}`)));
          c.publish(topic, String(str(ctx, 'MESSAGE')), { qos }, (e) =>
            e
              ? fail(new HeptadError('MQTT_PUBLISH_REFUSED', `the broker refused ${topic}`, { cause: e }))
              : ok(),
          );
        });
      } finally {
        await closeQuietly(c);
      }
      return { data: { topic, qos, published: true }, text: `Published to ${topic}\n` };
    },
  },
  {
    path: ['mqtt', 'sub'],
    summary: "Subscribe to your tenant's device or group topics and print the messages",
    description:
      'Prints "TOPIC PAYLOAD" lines as messages arrive (with --output json, {items} at the end). Stops after ' +
      '--count messages, after --timeout seconds, or on Ctrl-C. Filters: devices/<id>/…, devices/+/…, groups/… of ' +
      'your tenant; # at the root is refused.',
    args: [{ name: 'FILTER', description: 'e.g. devices/+/telemetry', required: true }],
    options: [
      ...MQTT_OPTIONS,
      { name: 'count', type: 'string', valueName: 'N', description: 'stop after N messages' },
      { name: 'timeout', type: 'string', valueName: 'SECONDS', description: 'stop after this many seconds' },
    ],
    service: true,
    examples: ['heptad mqtt sub "devices/+/telemetry" --count 10'],
    async run(ctx) {
      const qos = qosOf(ctx);
      const count = intOption(ctx, 'count', 1, 1_000_000);
      const timeout = intOption(ctx, 'timeout', 1, 86_400);
      const filter = String(str(ctx, 'FILTER'));
      const json = ctx.options['output'] === 'json';
      const c = await connectCloud(ctx, await ctx.client());
      const items: Array<{ topic: string; payload: string }> = [];
      try {
        await new Promise<void>((ok, fail) => {
          let timer: NodeJS.Timeout | undefined;
          const stop = () => {
            if (timer) clearTimeout(timer);
            process.off('SIGINT', stop);
            ok();
          };
          c.on('message', (topic, payload) => {
            const m = { topic, payload: payload.toString('utf8') };
            items.push(m);
            if (!json) ctx.io.stdout(`${m.topic} ${m.payload}\n`);
            if (count !== undefined && items.length >= count) stop();
          });
          c.once('close', () =>
            fail(new HeptadError('MQTT_CONNECTION_FAILED', 'the broker closed the connection')),
          );
          c.subscribe(filter, { qos }, (e, granted) => {
            const g =
              (e as { packet?: { granted?: number[] } } | null)?.packet?.granted?.[0] ?? granted?.[0]?.qos;
            if (g === undefined || g === 128) {
              return fail(new HeptadError('MQTT_SUBSCRIBE_REFUSED', `the broker refused ${filter}`));
            }
            ctx.io.stderr(`heptad: subscribed to ${filter}\n`);
            if (timeout !== undefined) timer = setTimeout(stop, timeout * 1000);
            process.once('SIGINT', stop);
          });
        });
      } finally {
        await closeQuietly(c);
      }
      return { data: { items }, text: '' };
    },
  },
  {
    path: ['broker', 'config', 'mosquitto'],
    summary:
      'Write a Mosquitto configuration for your tenant: CA chain, CRL, client certificates, per-device ACL',
    description:
      'Writes DIR/mosquitto.conf, DIR/acl, DIR/tenant-ca-chain.pem, DIR/tenant.crl.pem and, unless --server-cert ' +
      'and --server-key are given (or DIR already holds them), a server certificate for --host from a new local ' +
      'CA (DIR/server-ca.pem: clients trust it). The username is the certificate CN, the device id; each device ' +
      'may use only devices/<its id>/#, and groups/<id>/# where its group allows peer messages. Run it again at ' +
      'least daily and after every quarantine (the CRL lives 24 h), then reload Mosquitto.',
    args: [],
    options: [
      { name: 'out', type: 'string', valueName: 'DIR', description: 'folder to write to', required: true },
      {
        name: 'listen',
        type: 'string',
        valueName: 'HOST:PORT',
        description: `listener address (default 127.0.0.1:${DEFAULT_MQTT_PORT})`,
      },
      {
        name: 'host',
        type: 'string',
        valueName: 'NAME',
        description: 'name or IP in the generated server certificate (default localhost and 127.0.0.1)',
        multiple: true,
      },
      {
        name: 'server-cert',
        type: 'string',
        valueName: 'FILE',
        description: 'your server certificate chain (PEM)',
      },
      { name: 'server-key', type: 'string', valueName: 'FILE', description: 'its private key (PEM)' },
      {
        name: 'max-packet-size',
        type: 'string',
        valueName: 'BYTES',
        description: `largest MQTT packet (default ${DEFAULT_MOSQUITTO_MAX_PACKET})`,
      },
    ],
    service: true,
    examples: ['heptad broker config mosquitto --out /etc/mosquitto/heptad && kill -HUP $(pidof mosquitto)'],
    async run(ctx) {
      const dir = resolve(ctx.io.cwd, String(str(ctx, 'out')));
      const listenRaw = str(ctx, 'listen') ?? `127.0.0.1:${DEFAULT_MQTT_PORT}`;
      const m = /^(?:\[([0-9a-fA-F:]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(listenRaw);
      const port = Number(m?.[3]);
      if (!m || !(port >= 1 && port <= 65535))
        throw new HeptadError('CLI_USAGE', '--listen must be HOST:PORT (e.g. 127.0.0.1:8883)');
      const host = (m[1] ?? m[2]) as string;
      const maxPacketSize =
        intOption(ctx, 'max-packet-size', 1024, 268_435_455) ?? DEFAULT_MOSQUITTO_MAX_PACKET;
      const certFile = str(ctx, 'server-cert');
      const keyFile = str(ctx, 'server-key');
      if ((certFile === undefined) !== (keyFile === undefined))
        throw new HeptadError('CLI_USAGE', 'give --server-cert and --server-key together');
      const hosts = (ctx.options['host'] as string[] | undefined) ?? ['localhost', '127.0.0.1'];
      const read = (f: string, what: string) => {
        try {
          return readFileSync(resolve(ctx.io.cwd, f), 'utf8');
        } catch (cause) {
          throw new HeptadError('CLI_FILE_UNREADABLE', `cannot read ${what} ${f}`, { cause });
        }
      };
      const serverPem = certFile ? read(certFile, 'server certificate') : undefined;
      const serverKey = keyFile ? read(keyFile, 'server key') : undefined;
      if (existsSync(dir) && !statSync(dir).isDirectory())
        throw new HeptadError('CLI_USAGE', `--out ${dir} is not a folder`);

      // Everything is fetched before anything is written: a refusal leaves DIR as it was.
      const c = await ctx.client();
      const tenant = await c.request<{ id: string; name: string }>('GET', '/v1/tenants/current');
      const chain = await c.requestText('GET', '/v1/tenants/current/ca-certificates/trust-bundle?chain=true');
      const crl = await c.requestText('GET', '/v1/tenants/current/crl');
      const groups = await c.request<{
        items: Array<{ id: string; name: string; productName: string; allowPeerMessages: boolean }>;
      }>('GET', '/v1/device-groups');
      const peerGroups = [];
      for (const g of groups.items.filter((x) => x.allowPeerMessages)) {
        const deviceIds: string[] = [];
        let after: string | null = null;
        do {
          const q: string = `deviceGroup=${encodeURIComponent(g.id)}&limit=1000${after ? `&after=${after}` : ''}`;
          const page: { items: Array<{ id: string }>; nextCursor: string | null } = await c.request(
            'GET',
            `/v1/devices?${q}`,
          );
          deviceIds.push(...page.items.map((d) => d.id));
          after = page.nextCursor;
        } while (after);
        peerGroups.push({ id: g.id, name: `${g.productName}/${g.name}`, deviceIds });
      }

      mkdirSync(dir, { recursive: true, mode: 0o755 });
      const path = (name: string) => `${dir}/${name}`;
      let serverCa: string | null = null;
      if (serverPem !== undefined && serverKey !== undefined) {
        writeFileAtomic(path(MOSQUITTO_FILES.serverCert), serverPem, 0o644);
        writeFileAtomic(path(MOSQUITTO_FILES.serverKey), serverKey, 0o600);
      } else if (
        !existsSync(path(MOSQUITTO_FILES.serverCert)) ||
        !existsSync(path(MOSQUITTO_FILES.serverKey))
      ) {
        const now = new Date();
        const ca = await createCertificateAuthority({
          commonName: `Heptad Mosquitto server CA (${tenant.name})`,
          now,
          validityDays: SERVER_CERT_DAYS,
        });
        const server = await issueServerCertificate({ ca, hosts, now, validityDays: SERVER_CERT_DAYS });
        writeFileAtomic(path(MOSQUITTO_FILES.serverKey), server.keyPem, 0o600);
        writeFileAtomic(
          path(MOSQUITTO_FILES.serverCert),
          `${server.certPem.trim()}\n${ca.certPem.trim()}\n`,
          0o644,
        );
        writeFileAtomic(path(MOSQUITTO_FILES.serverCa), ca.certPem, 0o644);
        serverCa = path(MOSQUITTO_FILES.serverCa);
      } else if (existsSync(path(MOSQUITTO_FILES.serverCa))) {
        serverCa = path(MOSQUITTO_FILES.serverCa);
      }
      const { config, acl } = renderMosquittoConfig({
        dir,
        listen: { host, port },
        tenant,
        maxPacketSize,
        peerGroups,
        writtenAt: new Date().toISOString(),
      });
      writeFileAtomic(path(MOSQUITTO_FILES.caChain), chain, 0o644);
      writeFileAtomic(path(MOSQUITTO_FILES.crl), crl, 0o644);
      writeFileAtomic(path(MOSQUITTO_FILES.acl), acl, 0o644);
      writeFileAtomic(path(MOSQUITTO_FILES.config), config, 0o644);
      const data = {
        config: path(MOSQUITTO_FILES.config),
        acl: path(MOSQUITTO_FILES.acl),
        caChain: path(MOSQUITTO_FILES.caChain),
        crl: path(MOSQUITTO_FILES.crl),
        serverCa,
        listen: `${host}:${port}`,
        peerGroups: peerGroups.map((g) => ({ id: g.id, name: g.name, devices: g.deviceIds.length })),
      };
      const text = [
        `Wrote ${data.config} (listener ${data.listen}) with ${data.acl}, ${data.caChain}, ${data.crl}`,
        ...(serverCa ? [`Clients trust the server through ${serverCa}`] : []),
        `Start: mosquitto -c ${data.config}   Refresh daily and after quarantines: run this again, then kill -HUP`,
        '',
      ].join('\n');
      return { data, text };
    },
  },
  {
    path: ['device', 'cert', 'export'],
    summary:
      "Write a soft device's certificate chain and TLS key as PEM, so mosquitto_pub or openssl can act as it",
    description:
      'Development only: a soft root of trust keeps its keys in files anyway. Refused for TPM devices ' +
      '(DEVICE_CERT_EXPORT_TPM). Writes DIR2/device-chain.pem, DIR2/device-key.pem (0600), DIR2/tenant-root.pem ' +
      'and DIR2/platform-ca.pem (which the embedded broker’s server certificate chains to).',
    args: [],
    options: [
      { name: 'state', type: 'string', valueName: 'DIR', description: 'device state folder', required: true },
      { name: 'out', type: 'string', valueName: 'DIR2', description: 'folder to write to', required: true },
      {
        name: 'force',
        type: 'boolean',
        description: 'replace files a previous export wrote (after a new attestation)',
      },
    ],
    service: false,
    examples: [
      'heptad device cert export --state ./dev1 --out ./dev1-pem && mosquitto_pub -h 127.0.0.1 -p 8883 ' +
        '--cafile dev1-pem/platform-ca.pem --cert dev1-pem/device-chain.pem --key dev1-pem/device-key.pem ' +
        '-i "$ID" -t "devices/$ID/telemetry" -m hi',
    ],
    async run(ctx) {
      const state = new DeviceState(resolve(ctx.io.cwd, String(str(ctx, 'state'))));
      const config = state.config();
      if (config.rot.kind !== 'soft')
        throw new HeptadError('DEVICE_CERT_EXPORT_TPM', `device ${config.deviceId} uses a TPM root of trust`);
      const cert = state.certificate();
      if (!cert)
        throw new HeptadError('DEVICE_CERT_NOT_ISSUED', `device ${config.deviceId} holds no certificate`);
      const out = resolve(ctx.io.cwd, String(str(ctx, 'out')));
      if (existsSync(out)) {
        const st = statSync(out);
        if (!st.isDirectory()) throw new HeptadError('CLI_USAGE', `--out ${out} is not a folder`);
        // Another user who may write there could swap the key or the chain, or link them elsewhere.
        if ((st.mode & 0o022) !== 0)
          throw new HeptadError('DEVICE_CERT_OUT_UNSAFE', `--out ${out} is writable by group or others`);
        const names = ['device-chain.pem', 'device-key.pem', 'tenant-root.pem', 'platform-ca.pem'];
        const existing = names.filter((n) => existsSync(`${out}/${n}`));
        if (existing.length > 0 && ctx.options['force'] !== true)
          throw new HeptadError(
            'CLI_FILE_EXISTS',
            `${out} holds ${existing.join(', ')} already (--force replaces them)`,
          );
      }
      mkdirSync(out, { recursive: true, mode: 0o700 });
      writeFileAtomic(`${out}/device-chain.pem`, cert.chainPem, 0o644);
      writeFileAtomic(`${out}/device-key.pem`, cert.keyPem, 0o600);
      writeFileAtomic(`${out}/tenant-root.pem`, cert.rootPem, 0o644);
      const platformCa = state.platformCaPem();
      if (platformCa !== undefined) writeFileAtomic(`${out}/platform-ca.pem`, platformCa, 0o644);
      const data = {
        deviceId: config.deviceId,
        serial: cert.serial,
        notAfter: cert.notAfter,
        chain: `${out}/device-chain.pem`,
        key: `${out}/device-key.pem`,
        tenantRoot: `${out}/tenant-root.pem`,
        platformCa: platformCa === undefined ? null : `${out}/platform-ca.pem`,
      };
      return {
        data,
        text:
          `Wrote ${data.chain}, ${data.key} (0600) and ${data.tenantRoot}` +
          `${data.platformCa ? ` and ${data.platformCa}` : ''}; valid until ${data.notAfter}\n`,
      };
    },
  },
];
