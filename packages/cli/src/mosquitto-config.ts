/**
 * A Mosquitto configuration for one tenant, as text (pure: the command gathers the inputs).
 *
 * Identity: Mosquitto's `use_identity_as_username` takes the certificate's CN. Heptad device
 * certificates carry `CN=<device id>`, and a device id (the SHA-256 of the device's identity key) is
 * unique across the whole platform — the registry holds each id once and a device belongs to one
 * tenant at a time — so tenant and device cannot collide in the username. The listener trusts only
 * this tenant's CA chain, so a device of another tenant (or of another CA) is refused in the TLS
 * handshake; the CRL refuses revoked certificates (quarantine).
 */
export interface MosquittoConfigInput {
  readonly dir: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly tenant: { readonly id: string; readonly name: string };
  readonly maxPacketSize: number;
  /** device groups that allow peer messages, with their devices */
  readonly peerGroups: ReadonlyArray<{
    readonly id: string;
    readonly name: string;
    readonly deviceIds: readonly string[];
  }>;
  readonly writtenAt: string;
}

export const MOSQUITTO_FILES = {
  config: 'mosquitto.conf',
  acl: 'acl',
  caChain: 'tenant-ca-chain.pem',
  crl: 'tenant.crl.pem',
  serverCert: 'server.pem',
  serverKey: 'server.key',
  serverCa: 'server-ca.pem',
} as const;

export function renderMosquittoConfig(i: MosquittoConfigInput): { config: string; acl: string } {
  const f = (name: string) => `${i.dir}/${name}`;
  const host = i.listen.host.includes(':') ? i.listen.host : i.listen.host;
  const config = [
    `# Mosquitto configuration for Heptad tenant "${i.tenant.name}" (${i.tenant.id}),`,
    `# written by \`heptad broker config mosquitto\` at ${i.writtenAt}.`,
    '# Run it again at least daily and after every quarantine and unclaim, then reload Mosquitto (kill -HUP):',
    '# the CRL is valid for 24 h and lists the revoked certificates (devices quarantined or unclaimed).',
    'per_listener_settings false',
    'allow_anonymous false',
    'persistence false',
    "# Retained messages would outlive a device's tenant (unclaim, claim elsewhere): none are kept",
    '# (a client publishing one is disconnected). Persistent sessions are dropped after an hour offline.',
    'retain_available false',
    'persistent_client_expiration 1h',
    `max_packet_size ${i.maxPacketSize}`,
    `acl_file ${f(MOSQUITTO_FILES.acl)}`,
    '',
    `listener ${i.listen.port} ${host}`,
    `cafile ${f(MOSQUITTO_FILES.caChain)}`,
    `crlfile ${f(MOSQUITTO_FILES.crl)}`,
    `certfile ${f(MOSQUITTO_FILES.serverCert)}`,
    `keyfile ${f(MOSQUITTO_FILES.serverKey)}`,
    'require_certificate true',
    '# The username is the certificate CN: the device id (unique across the platform).',
    'use_identity_as_username true',
    '',
  ].join('\n');
  const acl = [
    `# ACL for Heptad tenant "${i.tenant.name}" (${i.tenant.id}), written at ${i.writtenAt}.`,
    '# Each device (username = device id) reads and writes only under its own topics.',
    'pattern readwrite devices/%u/#',
    '',
    ...(i.peerGroups.length === 0
      ? ['# No device group allows peer messages (heptad device-group update G --allow-peer-messages).']
      : ['# Device groups that allow peer messages: their devices share groups/<group id>/#.']),
    ...i.peerGroups.flatMap((g) =>
      [...g.deviceIds]
        .sort()
        .flatMap((d) => [`# ${g.name}`, `user ${d}`, `topic readwrite groups/${g.id}/#`, '']),
    ),
    '',
  ].join('\n');
  return { config, acl };
}
