import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  attestOnce,
  DeviceServiceClient,
  DeviceState,
  manufacture,
  openRootOfTrust,
  openTpmRootOfTrust,
  parseRotSpec,
} from '@heptad/device';
import { HeptadError } from '@heptad/protocol';
import { readFileArg, str } from './args.ts';
import type { CommandContext, CommandSpec } from './spec.ts';

/** Commands that act as the device itself, on its state folder (no operator token involved). */
export const DEVICE_LOCAL_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['device', 'manufacture'],
    summary: 'Create a device: its identity in the root of trust, its state folder and registration record',
    description:
      'The identity key (ECDSA P-256) is created inside the root of trust; its private part never leaves it. ' +
      'The device id is the SHA-256 of the key’s DER SubjectPublicKeyInfo. DIR/registration.json is what the ' +
      'operator registers (heptad device register --from DIR/registration.json).',
    args: [],
    options: [
      {
        name: 'state',
        type: 'string',
        valueName: 'DIR',
        description: 'new, empty device state folder',
        required: true,
      },
      {
        name: 'rot',
        type: 'string',
        valueName: 'soft|tpm[:HOST:PORT|:/dev/tpmrm0]',
        description: 'root of trust: soft (simulation), a TPM 2.0 chip or swtpm',
        required: true,
      },
      {
        name: 'service',
        type: 'string',
        valueName: 'URL',
        description: 'the security service the device talks to',
        required: true,
      },
      {
        name: 'platform-ca',
        type: 'string',
        valueName: 'FILE',
        description: "the service's platform CA (DATA/platform-ca.pem)",
      },
      {
        name: 'measurement-pcr',
        type: 'string',
        valueName: 'N',
        description: 'register the boot chain measures into (default 15)',
      },
      {
        name: 'runtime',
        type: 'string',
        valueName: 'FILE',
        description: 'factory runtime package, written into slot A (needs --runtime-signer)',
      },
      {
        name: 'runtime-signer',
        type: 'string',
        valueName: 'FILE',
        description: 'platform runtime-signing public key(s), PEM, written into the read-only area',
      },
    ],
    service: false,
    examples: [
      'heptad device manufacture --state ./dev1 --rot soft --service https://127.0.0.1:8443 --platform-ca heptad-data/platform-ca.pem --runtime runtime-1.0.0.hpkg --runtime-signer platform-runtime.key.pub',
    ],
    async run(ctx) {
      const rot = parseRotSpec(String(str(ctx, 'rot')));
      const caFile = str(ctx, 'platform-ca');
      const pcr = str(ctx, 'measurement-pcr');
      const runtimeFile = str(ctx, 'runtime');
      const signerFile = str(ctx, 'runtime-signer');
      if (pcr !== undefined && !/^\d{1,2}$/.test(pcr))
        throw new HeptadError('CLI_USAGE', '--measurement-pcr must be 0–23');
      const r = await manufacture({
        stateDir: resolve(ctx.io.cwd, String(str(ctx, 'state'))),
        rot,
        serviceUrl: String(str(ctx, 'service')),
        platformCaPem: caFile === undefined ? undefined : readFileArg(ctx, caFile, 'platform CA', 'utf8'),
        ...(pcr !== undefined ? { measurementPcr: Number(pcr) } : {}),
        openTpm: openTpmRootOfTrust,
        runtime: runtimeFile === undefined ? undefined : readFileArg(ctx, runtimeFile, 'runtime package'),
        runtimeSignersPem:
          signerFile === undefined ? undefined : readFileArg(ctx, signerFile, 'runtime signer key', 'utf8'),
      });
      return {
        data: {
          deviceId: r.deviceId,
          rotKind: r.registration.rotKind,
          registrationFile: r.registrationPath,
          runtime: r.runtime ?? null,
        },
        text: `${r.deviceId}\n`,
        note: `Registration record: ${r.registrationPath} (register it: heptad device register --from ${r.registrationPath})`,
      };
    },
  },
  {
    path: ['device', 'attest'],
    summary: 'Attest now: quote the measurements, send the evidence, keep the 24 h certificate',
    description:
      'Prints the certificate serial and expiry, or the service’s reason code. With --output json the PEM chain ' +
      'is included. The outcome is kept in DIR/attestation.json, the certificate in DIR/certs.',
    args: [],
    options: [
      { name: 'state', type: 'string', valueName: 'DIR', description: 'device state folder', required: true },
    ],
    service: false,
    async run(ctx) {
      const state = new DeviceState(resolve(ctx.io.cwd, String(str(ctx, 'state'))));
      const config = state.config();
      const rot = await openRootOfTrust(config.rot, state.secretsDir);
      const client = new DeviceServiceClient(config.serviceUrl, state.platformCaPem());
      try {
        const o = await attestOnce({ state, rot, client });
        return {
          data: o,
          table: {
            columns: [
              { header: 'DEVICE', get: (r) => r['deviceId'] },
              { header: 'ROT', get: (r) => r['rotKind'] },
              { header: 'SERIAL', get: (r) => r['serial'] },
              { header: 'NOT AFTER', get: (r) => r['notAfter'] },
            ],
            rows: [{ ...o }],
          },
        };
      } finally {
        client.close();
        await rot.close();
      }
    },
  },
];

/** Tenant PKI, quarantine and platform runtime-image commands (talk to the service). */
export const PKI_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['device', 'quarantine'],
    summary: 'Quarantine a device: no new certificate, its current certificates revoked (tenant CRL)',
    args: [{ name: 'ID', description: 'device id', required: true }],
    options: [
      {
        name: 'reason',
        type: 'string',
        valueName: 'TEXT',
        description: 'why (kept with the device and in the audit log)',
      },
    ],
    service: true,
    async run(ctx) {
      const id = String(str(ctx, 'ID')).toLowerCase();
      const reason = str(ctx, 'reason');
      const d = await (await ctx.client()).request<Record<string, unknown>>(
        'POST',
        `/v1/devices/${encodeURIComponent(id)}/quarantine`,
        reason === undefined ? {} : { reason },
      );
      return { data: d };
    },
  },
  {
    path: ['device', 'release'],
    summary: 'Release a device from quarantine (it attests afresh; revoked certificates stay revoked)',
    args: [{ name: 'ID', description: 'device id', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const id = String(str(ctx, 'ID')).toLowerCase();
      const d = await (await ctx.client()).request<Record<string, unknown>>(
        'DELETE',
        `/v1/devices/${encodeURIComponent(id)}/quarantine`,
      );
      return { data: d };
    },
  },
  {
    path: ['tenant', 'ca-certificate', 'list'],
    summary: "List your tenant's CA certificates (root and issuing generations) with their status",
    args: [],
    options: [],
    service: true,
    async run(ctx) {
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        '/v1/tenants/current/ca-certificates',
      );
      return {
        data: { items },
        table: {
          columns: [
            { header: 'KIND', get: (r) => r['kind'] },
            { header: 'GEN', get: (r) => r['generation'] },
            { header: 'STATUS', get: (r) => r['status'] },
            { header: 'ACTIVE FROM', get: (r) => r['activeFrom'] },
            { header: 'NOT AFTER', get: (r) => r['notAfter'] },
            { header: 'SHA-256 FINGERPRINT', get: (r) => r['fingerprintSha256'] },
          ],
          rows: items,
        },
      };
    },
  },
  {
    path: ['tenant', 'ca-certificate', 'download'],
    summary:
      'Download the PEM a broker or cloud should trust: the root CA (--chain: with every published issuing CA)',
    args: [],
    options: [
      { name: 'chain', type: 'boolean', description: 'include the published issuing CAs' },
      { name: 'out', type: 'string', valueName: 'FILE', description: 'write to FILE instead of stdout' },
    ],
    service: true,
    async run(ctx) {
      const chain = ctx.options['chain'] === true;
      const pem = await (await ctx.client()).requestText(
        'GET',
        `/v1/tenants/current/ca-certificates/trust-bundle?chain=${chain}`,
      );
      return writeOrPrint(ctx, pem);
    },
  },
  {
    path: ['tenant', 'ca-certificate', 'rotate'],
    summary: 'Create the next issuing CA: published now, issuing after the overlap window (Administrator)',
    args: [],
    options: [
      {
        name: 'overlap-days',
        type: 'string',
        valueName: 'N',
        description: 'days both are published before the switch (default 45)',
      },
    ],
    service: true,
    async run(ctx) {
      const days = str(ctx, 'overlap-days');
      if (days !== undefined && !/^\d{1,3}$/.test(days))
        throw new HeptadError('CLI_USAGE', '--overlap-days must be 0–365');
      const ca = await (await ctx.client()).request<Record<string, unknown>>(
        'POST',
        '/v1/tenants/current/ca-certificates/rotate',
        days === undefined ? {} : { overlapDays: Number(days) },
      );
      const { certificatePem: _pem, ...shown } = ca;
      return {
        data: ca,
        text: `${Object.entries(shown)
          .map(([k, v]) => `${k.padEnd(18)} ${String(v)}`)
          .join('\n')}\n`,
      };
    },
  },
  {
    path: ['tenant', 'crl', 'download'],
    summary: "Download your tenant's certificate revocation lists (PEM)",
    args: [],
    options: [
      { name: 'out', type: 'string', valueName: 'FILE', description: 'write to FILE instead of stdout' },
    ],
    service: true,
    async run(ctx) {
      return writeOrPrint(ctx, await (await ctx.client()).requestText('GET', '/v1/tenants/current/crl'));
    },
  },
  {
    path: ['security-event', 'list'],
    summary: "List your tenant's security events (refused attestations, …), newest first",
    args: [],
    options: [
      { name: 'device', type: 'string', valueName: 'ID', description: 'only this device' },
      { name: 'limit', type: 'string', valueName: 'N', description: '1–1000 (default 100)' },
    ],
    service: true,
    async run(ctx) {
      const q = new URLSearchParams();
      const d = str(ctx, 'device');
      const l = str(ctx, 'limit');
      if (d !== undefined) q.set('deviceId', d.toLowerCase());
      if (l !== undefined) q.set('limit', l);
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        `/v1/security-events${q.size ? `?${q}` : ''}`,
      );
      return {
        data: { items },
        table: {
          columns: [
            { header: 'AT', get: (r) => r['at'] },
            { header: 'DEVICE', get: (r) => r['deviceId'] },
            { header: 'KIND', get: (r) => r['kind'] },
            { header: 'REASON', get: (r) => r['reason'] },
          ],
          rows: items,
        },
      };
    },
  },
  {
    path: ['runtime-image', 'add'],
    summary: 'Make a device-runtime image known to attestation (operator)',
    args: [
      {
        name: 'DIGEST',
        description:
          'the runtime package digest (SHA-256 of its signed region, as the bootloader measures it)',
        required: true,
      },
    ],
    options: [
      { name: 'version', type: 'string', valueName: 'X.Y.Z', description: 'runtime version', required: true },
      {
        name: 'security-version',
        type: 'string',
        valueName: 'N',
        description: 'anti-rollback security version',
        required: true,
      },
    ],
    service: true,
    async run(ctx) {
      const sv = String(str(ctx, 'security-version'));
      if (!/^\d{1,9}$/.test(sv))
        throw new HeptadError('CLI_USAGE', '--security-version must be a whole number');
      const body = {
        digest: String(str(ctx, 'DIGEST')).toLowerCase(),
        version: String(str(ctx, 'version')),
        securityVersion: Number(sv),
      };
      return {
        data: await (await ctx.client()).request<Record<string, unknown>>('POST', '/v1/runtime-images', body),
      };
    },
  },
  {
    path: ['runtime-image', 'list'],
    summary: 'List the runtime images the platform knows',
    args: [],
    options: [],
    service: true,
    async run(ctx) {
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        '/v1/runtime-images',
      );
      return {
        data: { items },
        table: {
          columns: [
            { header: 'DIGEST', get: (r) => r['digest'] },
            { header: 'VERSION', get: (r) => r['version'] },
            { header: 'SECURITY VERSION', get: (r) => r['securityVersion'] },
          ],
          rows: items,
        },
      };
    },
  },
];

function writeOrPrint(ctx: CommandContext, pem: string) {
  const out = str(ctx, 'out');
  if (out === undefined) return { data: { pem }, text: pem };
  const path = resolve(ctx.io.cwd, out);
  writeFileSync(path, pem);
  return { data: { file: path }, text: `Wrote ${path}\n` };
}
