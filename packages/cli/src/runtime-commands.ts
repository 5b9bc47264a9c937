import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomUUID,
} from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  addDeveloperKeys,
  commitApp,
  DEFAULT_WATCHDOG_MS,
  DeviceState,
  FsStorage,
  INCOMING_RUNTIME_PATH,
  installApp,
  isAlive,
  LAST_CHECK_PATH,
  loadBootState,
  loadPlatformKeys,
  parsePublicKeys,
  readBrokerStatus,
  readRunStatus,
  runDevice,
  setAppDevelopment,
  UPDATE_NOW_PATH,
} from '@heptad/device';
import {
  addSignature,
  buildPackage,
  HeptadError,
  keyIdOf,
  // The Heptad runtime's component id (the same for every version; error reports use it too).
  RUNTIME_COMPONENT_ID,
  readManifestUnverified,
  verifyPackage,
  writeFileAtomic,
} from '@heptad/protocol';
import { readAppsStatus } from './app-commands.ts';
import { readFileArg, securityVersionOption, str, versionOption } from './args.ts';
import type { CommandContext, CommandSpec } from './spec.ts';

export const RUNTIME_ENTRY = 'runtime.mjs';

const path = (ctx: CommandContext, name: string): string => resolve(ctx.io.cwd, String(str(ctx, name)));

/**
 * A signing key file: PKCS#8 PEM, ECDSA P-256, readable by its owner only (like ssh refuses an
 * open private key: a key others can read is not the signer's any more).
 */
export function loadSigningKey(ctx: CommandContext, file: string): KeyObject {
  const pem = readFileArg(ctx, file, 'key file');
  if ((statSync(resolve(ctx.io.cwd, file)).mode & 0o077) !== 0)
    throw new HeptadError('KEY_FILE_PERMISSIONS', `${file} is readable by other users`);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (cause) {
    throw new HeptadError('KEY_FILE_INVALID', `${file} is not a private key (PKCS#8 PEM)`, { cause });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new HeptadError('KEY_FILE_INVALID', `${file} is not an ECDSA P-256 key`);
  return key;
}

/**
 * Bundles the runtime (or another entry module) into one ES module with esbuild. The app SDK
 * (@heptad/sdk) is bundled first and embedded as the text HEPTAD_SDK_BUNDLE: the supervisor hands
 * it to every app, so the SDK is signed and measured with the runtime (docs/apps.md §SDK).
 */
const UNUSED_MODULES = /^(ws|socks|worker-timers)$/;
const UNUSED_IN_RUNTIME = {
  name: 'heptad-unused-in-runtime',
  setup(b: {
    onResolve: (
      o: { filter: RegExp },
      f: (a: { path: string }) => { path: string; namespace?: string; external?: boolean },
    ) => void;
    onLoad: (o: { filter: RegExp; namespace: string }, f: () => { contents: string; loader: 'js' }) => void;
  }) {
    b.onResolve({ filter: UNUSED_MODULES }, (a) => ({ path: a.path, namespace: 'heptad-unused' }));
    // readable-stream is a copy of Node's own streams, for browsers: Node's is already loaded.
    b.onResolve({ filter: /^readable-stream$/ }, () => ({ path: 'node:stream', external: true }));
    b.onLoad({ filter: /.*/, namespace: 'heptad-unused' }, () => ({
      contents: 'module.exports = {};',
      loader: 'js',
    }));
    // TUF delegations (tuf-js matches delegated paths with minimatch): Heptad's repositories have
    // none, so no delegated path ever matches — a delegation in hostile metadata names nothing.
    b.onResolve({ filter: /^minimatch$/ }, () => ({ path: 'minimatch', namespace: 'heptad-nomatch' }));
    b.onLoad({ filter: /.*/, namespace: 'heptad-nomatch' }, () => ({
      contents: 'module.exports = { minimatch: () => false };',
      loader: 'js',
    }));
    // Debug logging of tuf-js and the MQTT client (off unless DEBUG is set, which the runtime's
    // empty environment never has): a logger that does nothing.
    b.onResolve({ filter: /^debug$/ }, () => ({ path: 'debug', namespace: 'heptad-nodebug' }));
    b.onLoad({ filter: /.*/, namespace: 'heptad-nodebug' }, () => ({
      contents:
        'const off = () => { const log = () => {}; log.enabled = false; log.extend = off; return log; };' +
        ' off.enable = () => {}; off.disable = () => ""; off.enabled = () => false; module.exports = off;',
      loader: 'js',
    }));
  },
};

export async function bundleRuntime(entry: string): Promise<Buffer> {
  const esbuild = await import('esbuild');
  try {
    const sdk = await esbuild.build({
      entryPoints: [fileURLToPath(import.meta.resolve('@heptad/sdk'))],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      write: false,
      legalComments: 'none',
      logLevel: 'silent',
      packages: 'bundle',
    });
    const sdkText = sdk.outputFiles[0]?.text;
    if (sdkText === undefined) throw new Error('no SDK output');
    const out = await esbuild.build({
      define: { HEPTAD_SDK_BUNDLE: JSON.stringify(sdkText) },
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      write: false,
      legalComments: 'none',
      logLevel: 'silent',
      // Node built-ins stay imports; everything else is inside the one file that gets signed.
      packages: 'bundle',
      // Parts of the MQTT client the device never uses (WebSocket and SOCKS transports, browser
      // timers) are left out: the runtime would hold their source in memory for nothing.
      plugins: [UNUSED_IN_RUNTIME],
      // The runtime holds its own source text in memory for as long as it runs: no whitespace
      // and simpler syntax (a third less). Identifiers are not renamed, so stack traces and crash
      // buckets keep their function names.
      minifyWhitespace: true,
      minifySyntax: true,
      // CommonJS dependencies (tuf-js) require() Node built-ins: give the ES module a require for them.
      banner: {
        js: "import { createRequire as __heptadRequire } from 'node:module'; const require = __heptadRequire(import.meta.url);",
      },
    });
    const file = out.outputFiles[0];
    if (file === undefined) throw new Error('no output');
    return Buffer.from(file.contents);
  } catch (cause) {
    const first = (cause as { errors?: Array<{ text: string }> }).errors?.[0]?.text;
    throw new HeptadError('RUNTIME_BUILD_FAILED', first ?? (cause as Error).message, { cause });
  }
}

export const RUNTIME_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['key', 'create'],
    summary: 'Create an ECDSA P-256 signing key (developer, build or platform runtime-signing key)',
    description:
      'Writes the private key to FILE (PKCS#8 PEM, mode 0600) and its public key to FILE.pub (SPKI PEM). ' +
      'The key id (SHA-256 of the DER public key) is what package signatures name.',
    args: [],
    options: [
      {
        name: 'out',
        type: 'string',
        valueName: 'FILE',
        description: 'private key file to create',
        required: true,
      },
    ],
    service: false,
    examples: ['heptad key create --out platform-runtime.key'],
    async run(ctx) {
      const out = path(ctx, 'out');
      if (existsSync(out) || existsSync(`${out}.pub`))
        throw new HeptadError(
          'CLI_FILE_EXISTS',
          `${out} or ${out}.pub exists already; keys are never overwritten`,
        );
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      writeFileAtomic(out, privateKey.export({ format: 'pem', type: 'pkcs8' }), 0o600);
      writeFileAtomic(`${out}.pub`, publicKey.export({ format: 'pem', type: 'spki' }), 0o644);
      const keyId = keyIdOf(publicKey);
      return {
        data: { keyId, keyFile: out, publicKeyFile: `${out}.pub` },
        text: `${keyId}\n`,
        note: `Private key: ${out} (0600, keep it secret)  Public key: ${out}.pub`,
      };
    },
  },
  {
    path: ['runtime', 'pack'],
    summary: 'Build the device runtime into one bundle inside a signed runtime package',
    description:
      'Bundles the Heptad device runtime (or --from MODULE) with esbuild into runtime.mjs and packs it as a ' +
      'runtime image package signed by --key (the build key). Devices boot it only once the platform ' +
      'runtime-signing key has signed it too (heptad runtime sign).',
    args: [],
    options: [
      {
        name: 'out',
        type: 'string',
        valueName: 'FILE',
        description: 'package file to write',
        required: true,
      },
      {
        name: 'version',
        type: 'string',
        valueName: 'X.Y.Z',
        description: 'semantic version',
        required: true,
      },
      {
        name: 'security-version',
        type: 'string',
        valueName: 'N',
        description: 'anti-rollback security version (raise it to retire vulnerable releases)',
        required: true,
      },
      {
        name: 'key',
        type: 'string',
        valueName: 'FILE',
        description: 'build signing key (heptad key create)',
        required: true,
      },
      {
        name: 'from',
        type: 'string',
        valueName: 'MODULE',
        description: 'bundle this entry module instead of the Heptad runtime',
      },
    ],
    service: false,
    examples: [
      'heptad runtime pack --out runtime-1.2.0.hpkg --version 1.2.0 --security-version 3 --key build.key',
    ],
    async run(ctx) {
      const version = versionOption(ctx);
      const sv = securityVersionOption(ctx);
      const key = loadSigningKey(ctx, String(str(ctx, 'key')));
      const from = str(ctx, 'from');
      const entry =
        from === undefined
          ? fileURLToPath(import.meta.resolve('@heptad/device/runtime-main'))
          : resolve(ctx.io.cwd, from);
      if (from !== undefined && !existsSync(entry))
        throw new HeptadError('CLI_FILE_UNREADABLE', `cannot read module ${from}`);
      const bundle = await bundleRuntime(entry);
      const pkg = buildPackage({
        manifest: {
          componentId: RUNTIME_COMPONENT_ID,
          imageId: randomUUID(),
          name: 'heptad-runtime',
          version,
          securityVersion: sv,
          type: 'runtime',
          entryPoint: RUNTIME_ENTRY,
          createdAt: new Date().toISOString(),
        },
        files: [{ path: RUNTIME_ENTRY, content: bundle }],
        signers: [{ privateKey: key }],
      });
      const out = path(ctx, 'out');
      writeFileAtomic(out, pkg, 0o644);
      const v = verifyPackage(pkg, new Map([[keyIdOf(key), createPublicKey(key)]]));
      return {
        data: {
          file: out,
          digest: v.digest,
          version,
          securityVersion: sv,
          size: pkg.length,
          bundleSize: bundle.length,
        },
        text: `${v.digest}\n`,
        note: `Wrote ${out} (${pkg.length} bytes). Sign it: heptad runtime sign ${out} --key PLATFORM_KEY`,
      };
    },
  },
  {
    path: ['runtime', 'sign'],
    summary: 'Sign a runtime package with the platform runtime-signing key (operator)',
    description:
      'Adds a signature to FILE (in place, or to --out). The signed region — and so the package digest the ' +
      'bootloader measures — does not change. Register the digest for attestation with heptad runtime-image add.',
    args: [{ name: 'FILE', description: 'runtime package', required: true }],
    options: [
      {
        name: 'key',
        type: 'string',
        valueName: 'FILE',
        description: 'platform runtime-signing key',
        required: true,
      },
      {
        name: 'out',
        type: 'string',
        valueName: 'FILE',
        description: 'write the signed package here (default: FILE)',
      },
    ],
    service: false,
    examples: ['heptad runtime sign runtime-1.2.0.hpkg --key platform-runtime.key'],
    async run(ctx) {
      const file = resolve(ctx.io.cwd, String(str(ctx, 'FILE')));
      const key = loadSigningKey(ctx, String(str(ctx, 'key')));
      const bytes = readFileArg(ctx, file, 'package');
      const manifest = readManifestUnverified(bytes);
      if (manifest.type !== 'runtime')
        throw new HeptadError('BOOT_NOT_RUNTIME', `${file} is not a runtime package`);
      const signed = addSignature(bytes, key);
      // Check what we vouch for before writing it: the new signature verifies over intact contents.
      const v = verifyPackage(signed, new Map([[keyIdOf(key), createPublicKey(key)]]));
      const out = str(ctx, 'out') === undefined ? file : path(ctx, 'out');
      writeFileAtomic(out, signed, 0o644);
      return {
        data: {
          file: out,
          digest: v.digest,
          version: v.manifest.version,
          securityVersion: v.manifest.securityVersion,
          keyId: keyIdOf(key),
        },
        text: `${v.digest}\n`,
        note: `Signed ${out}. Make it known to attestation: heptad runtime-image add ${v.digest} --version ${v.manifest.version} --security-version ${v.manifest.securityVersion}`,
      };
    },
  },
  {
    path: ['device', 'run'],
    summary: 'Power the device on: bootloader, measured runtime, watchdog (runs until stopped)',
    description:
      'The bootloader verifies the active runtime slot against the platform runtime-signing key and the ' +
      'anti-rollback floor, extends its digest into the root of trust, and only then starts it; a slot that ' +
      'fails falls back to the other one, and a trial that crashes, hangs or fails its health check returns ' +
      'to the committed runtime when its attempts run out. Ctrl-C (SIGTERM) powers the device off.',
    args: [],
    options: [
      { name: 'state', type: 'string', valueName: 'DIR', description: 'device state folder', required: true },
      {
        name: 'watchdog',
        type: 'string',
        valueName: 'MS',
        description: `runtime heartbeat watchdog (default ${DEFAULT_WATCHDOG_MS})`,
      },
      {
        name: 'health-timeout',
        type: 'string',
        valueName: 'MS',
        description: 'how long a trial has to pass its health check (default 120000)',
      },
      {
        name: 'update-interval',
        type: 'string',
        valueName: 'MS',
        description:
          'how often the update agent asks for updates, ±10 % (default 72000000 = 20 h; also at boot)',
      },
      {
        name: 'app-health-period',
        type: 'string',
        valueName: 'MS',
        description: 'how long an updated app must run without a restart to be committed (default 5000)',
      },
    ],
    service: false,
    examples: ['heptad device run --state ./dev1'],
    async run(ctx) {
      const ms = (name: string): number | undefined => {
        const v = str(ctx, name);
        if (v === undefined) return undefined;
        if (!/^\d{1,9}$/.test(v) || Number(v) < 100)
          throw new HeptadError('CLI_USAGE', `--${name} must be a number of ms ≥ 100`);
        return Number(v);
      };
      const watchdogMs = ms('watchdog');
      const healthTimeoutMs = ms('health-timeout');
      const updateCheckMs = ms('update-interval');
      const appHealthMs = ms('app-health-period');
      const settings = {
        ...(healthTimeoutMs !== undefined ? { healthTimeoutMs } : {}),
        ...(updateCheckMs !== undefined ? { updateCheckMs } : {}),
        ...(appHealthMs !== undefined ? { appHealthMs } : {}),
      };
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const stateDir = path(ctx, 'state');
      const wait = runDevice({
        stateDir,
        stop: stop.signal,
        log: (line) => ctx.io.stdout(`${line}\n`),
        ...(watchdogMs !== undefined ? { watchdogMs } : {}),
        ...(Object.keys(settings).length > 0 ? { settings } : {}),
      })
        .then(() => undefined)
        .finally(() => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        });
      return { data: { stateDir }, text: `Powering on ${stateDir}\n`, wait };
    },
  },
  {
    path: ['device', 'status'],
    summary: "Show the device's state: id, root of trust, slots, trial, certificate, last attestation",
    args: [],
    options: [
      { name: 'state', type: 'string', valueName: 'DIR', description: 'device state folder', required: true },
    ],
    service: false,
    async run(ctx) {
      const dir = path(ctx, 'state');
      const state = new DeviceState(dir);
      const config = state.config();
      const storage = new FsStorage(dir);
      let slots: Record<string, unknown> | null = null;
      try {
        const keys = loadPlatformKeys(storage);
        const { state: boot, recovered } = loadBootState(storage, keys);
        slots = { committed: boot.committed, trial: boot.trial, floor: boot.floor, recovered };
      } catch {
        slots = null; // no runtime installed (manufactured without one)
      }
      const run = readRunStatus(dir);
      const running =
        run !== undefined &&
        (run.phase === 'running' || run.phase === 'starting') &&
        isAlive(run.supervisorPid);
      const cert = state.certificate();
      const att = state.lastAttestation();
      const check = storage.read(LAST_CHECK_PATH);
      let lastUpdateCheck: Record<string, unknown> | null = null;
      try {
        lastUpdateCheck = check ? (JSON.parse(check.toString('utf8')) as Record<string, unknown>) : null;
      } catch {
        lastUpdateCheck = null;
      }
      const apps = readAppsStatus(dir);
      const brokerStatus = readBrokerStatus(dir);
      const data = {
        deviceId: config.deviceId,
        rotKind: config.rot.kind,
        serviceUrl: config.serviceUrl,
        running,
        phase:
          run === undefined
            ? 'never-run'
            : running
              ? run.phase
              : run.phase === 'halted'
                ? 'halted'
                : 'stopped',
        ...(run?.code ? { haltCode: run.code } : {}),
        runtime:
          running && run
            ? { slot: run.slot, version: run.version, digest: run.digest, trial: run.trial }
            : null,
        slots,
        certificate: cert ? { serial: cert.serial, notAfter: cert.notAfter } : null,
        lastAttestation: att ?? null,
        capabilities: state.capabilities(),
        lastUpdateCheck,
        // What the app supervisor last wrote: its isolation layers and the apps' states.
        isolation: running ? (apps?.['layers'] ?? null) : null,
        apps: running ? (apps?.['apps'] ?? []) : [],
        // The runtime's broker session: connected, connecting, refused CODE, off.
        broker: running ? (brokerStatus?.broker ?? 'off') : 'off',
        brokerUrl: running ? (brokerStatus?.url ?? null) : null,
      };
      const layers = data.isolation as Record<string, unknown> | null;
      const rt = data.runtime;
      const text = [
        `Device:            ${data.deviceId}`,
        `Root of trust:     ${data.rotKind}`,
        `State:             ${data.phase}${data.haltCode ? ` (${data.haltCode})` : ''}`,
        `Runtime:           ${rt ? `${rt.version} in slot ${rt.slot}${rt.trial ? ' (trial)' : ' (committed)'}` : '-'}`,
        `Slots:             ${slots ? `committed ${slots['committed']}${slots['trial'] ? `, trial ${(slots['trial'] as { slot: string }).slot}` : ''}, floor ${slots['floor']}` : 'no runtime installed'}`,
        `Certificate:       ${cert ? `${cert.serial} until ${cert.notAfter}` : 'none'}`,
        `Last attestation:  ${att ? `${att.outcome}${att.code ? ` (${att.code})` : ''} at ${att.at}` : 'never'}`,
        `Capabilities:      ${data.capabilities.join(', ') || '-'}`,
        `Last update check: ${lastUpdateCheck ? `${lastUpdateCheck['ok'] ? 'ok' : `refused (${lastUpdateCheck['code']})`} at ${lastUpdateCheck['at']}` : 'never'}`,
        `Isolation:         ${
          layers
            ? [
                'permission model',
                layers['ownUser'] ? 'own uid' : 'no own uid',
                layers['networkNamespace'] ? 'network namespace' : 'no network namespace',
                layers['memoryLimit'] ? 'memory limit' : 'no memory limit',
                'brokered capabilities',
              ].join(', ')
            : '-'
        }`,
        `Broker:            ${data.broker}${data.brokerUrl ? ` (${data.brokerUrl})` : ''}`,
        `Apps:              ${
          (data.apps as Array<Record<string, unknown>>)
            .map((a) => `${a['name']} ${a['state']}${a['restarts'] ? ` (${a['restarts']} restarts)` : ''}`)
            .join(', ') || '-'
        }`,
        '',
      ].join('\n');
      return { data, text };
    },
  },
  {
    path: ['device', 'update-now'],
    summary: 'Make the running device check for updates now, and wait for the outcome',
    description:
      'Asks the runtime started by heptad device run on this state folder to run its update check at once ' +
      '(TUF metadata from the director and the image repository, downloads, install: the runtime first, then ' +
      'apps), and prints what the check did. A runtime update reboots the device into its trial.',
    args: [],
    options: [
      { name: 'state', type: 'string', valueName: 'DIR', description: 'device state folder', required: true },
      {
        name: 'timeout',
        type: 'string',
        valueName: 'MS',
        description: 'how long to wait for the check (default 120000)',
      },
    ],
    service: false,
    examples: ['heptad device update-now --state ./dev1'],
    async run(ctx) {
      const dir = path(ctx, 'state');
      new DeviceState(dir).config(); // a device state folder, or DEVICE_STATE_INVALID
      const t = str(ctx, 'timeout');
      if (t !== undefined && (!/^\d{1,9}$/.test(t) || Number(t) < 100))
        throw new HeptadError('CLI_USAGE', '--timeout must be a number of ms ≥ 100');
      const timeoutMs = t === undefined ? 120_000 : Number(t);
      const run = readRunStatus(dir);
      if (!run || !(run.phase === 'running' || run.phase === 'starting') || !isAlive(run.supervisorPid))
        throw new HeptadError('UPDATE_DEVICE_NOT_RUNNING', `no heptad device run on ${dir}`);
      const storage = new FsStorage(dir);
      const request = randomUUID();
      storage.write(UPDATE_NOW_PATH, Buffer.from(request), 0o600);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const bytes = storage.read(LAST_CHECK_PATH);
        if (bytes) {
          try {
            const r = JSON.parse(bytes.toString('utf8')) as {
              at: string;
              request?: string;
              ok: boolean;
              code?: string;
              jobs: Array<Record<string, unknown>>;
            };
            // The check the runtime ran for this request answers it.
            if (r.request === request) {
              if (!r.ok && r.code)
                throw new HeptadError(r.code as 'UPDATE_METADATA_INVALID', 'the update check was refused', {
                  detail: { jobs: r.jobs },
                });
              return {
                data: r,
                table: {
                  columns: [
                    { header: 'KIND', get: (j) => j['kind'] },
                    { header: 'NAME', get: (j) => j['name'] },
                    { header: 'VERSION', get: (j) => j['version'] },
                    { header: 'STATE', get: (j) => j['state'] },
                    { header: 'CODE', get: (j) => j['code'] ?? '' },
                  ],
                  rows: r.jobs,
                },
                note: r.jobs.length === 0 ? 'up to date' : 'update check done',
              };
            }
          } catch (e) {
            if (e instanceof HeptadError) throw e;
            // written atomically; unreadable only mid-replace on odd file systems: read again
          }
        }
        if (Date.now() > deadline)
          throw new HeptadError('UPDATE_CHECK_TIMEOUT', `no update check finished within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
  },
  {
    path: ['device', 'sideload'],
    summary:
      'Install an app into the device’s app store, or stage a runtime package (installed and booted as a trial)',
    description:
      'An application package is installed into the app store at once (verified: a production image key, or ' +
      'on a device with app development enabled a developer key; it must fit the board and the other apps) and ' +
      'committed; a running device starts or restarts it within a second. --developer-key enables app ' +
      'development on this device (the device side of the appDevelopment capability) and trusts that public ' +
      'key for dev-signed apps. A runtime package is checked against the device’s platform key first (nothing ' +
      'is staged otherwise), then placed in DIR/incoming. heptad device run installs it into the inactive ' +
      'slot, reboots into it as a trial and commits it after its health check, or returns to the current runtime.',
    args: [
      {
        name: 'FILE',
        description: 'application package, or runtime package signed by the platform',
        required: true,
      },
    ],
    options: [
      { name: 'state', type: 'string', valueName: 'DIR', description: 'device state folder', required: true },
      {
        name: 'developer-key',
        type: 'string',
        valueName: 'FILE',
        description:
          'enable app development and trust this developer public key (the .pub of heptad key create)',
      },
    ],
    service: false,
    examples: ['heptad device sideload blink-1.0.0.hpkg --state ./dev1 --developer-key dev.key.pub'],
    async run(ctx) {
      const dir = path(ctx, 'state');
      new DeviceState(dir).config(); // a device state folder, or DEVICE_STATE_INVALID
      const storage = new FsStorage(dir);
      const bytes = readFileArg(ctx, String(str(ctx, 'FILE')), 'package');
      if (readManifestUnverified(bytes).type === 'application') return sideloadApp(ctx, storage, bytes);
      const pkg = verifyPackage(bytes, loadPlatformKeys(storage));
      if (pkg.manifest.type !== 'runtime') throw new HeptadError('BOOT_NOT_RUNTIME', 'not a runtime package');
      const keys = loadPlatformKeys(storage);
      const { state } = loadBootState(storage, keys);
      if (pkg.manifest.securityVersion < state.floor)
        throw new HeptadError(
          'BOOT_ROLLBACK_REFUSED',
          `security version ${pkg.manifest.securityVersion} is below the floor ${state.floor}`,
        );
      storage.write(INCOMING_RUNTIME_PATH, bytes, 0o600);
      return {
        data: {
          staged: resolve(dir, INCOMING_RUNTIME_PATH),
          digest: pkg.digest,
          version: pkg.manifest.version,
        },
        text: `Staged runtime ${pkg.manifest.version} (${pkg.digest})\n`,
      };
    },
  },
];

/** Installs and commits an application package on a device (development: no trial). */
function sideloadApp(ctx: CommandContext, storage: FsStorage, bytes: Buffer) {
  const devKey = str(ctx, 'developer-key');
  if (devKey !== undefined) {
    const pem = readFileArg(ctx, devKey, 'developer public key', 'utf8');
    parsePublicKeys(pem); // KEY_FILE_INVALID before anything is written
    setAppDevelopment(storage, true);
    addDeveloperKeys(storage, pem);
  }
  const r = installApp(storage, bytes);
  commitApp(storage, r.componentId);
  const m = r.verified.pkg.manifest;
  return {
    data: {
      componentId: r.componentId,
      name: m.name,
      version: m.version,
      slot: r.slot,
      digest: r.verified.pkg.digest,
      devSigned: r.verified.devSigned,
    },
    text: `Installed ${m.name} ${m.version} (${r.componentId}) in slot ${r.slot}${r.verified.devSigned ? ', dev-signed' : ''}\n`,
  };
}

const RELEASE_COLUMNS = [
  { header: 'VERSION', get: (r: Record<string, unknown>) => r['version'] },
  { header: 'SECURITY', get: (r: Record<string, unknown>) => r['securityVersion'] },
  { header: 'FEED', get: (r: Record<string, unknown>) => r['feed'] },
  { header: 'WITHDRAWN', get: (r: Record<string, unknown>) => (r['withdrawn'] ? 'yes' : '') },
  { header: 'DIGEST', get: (r: Record<string, unknown>) => r['digest'] },
  { header: 'PUBLISHED', get: (r: Record<string, unknown>) => r['publishedAt'] },
];
const ref = (ctx: CommandContext) => encodeURIComponent(String(str(ctx, 'RELEASE')));

/** Runtime releases on the feeds (operator), and what a device group is offered. */
export const RUNTIME_RELEASE_COMMANDS: readonly CommandSpec[] = [
  {
    path: ['runtime', 'signer', 'add'],
    summary: 'Register a platform runtime-signing public key with the service (operator)',
    args: [{ name: 'FILE', description: 'public key PEM (the .pub of heptad key create)', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const pem = readFileArg(ctx, String(str(ctx, 'FILE')), 'public key').toString('utf8');
      // A private key never leaves this machine, even by mistake.
      if (/PRIVATE KEY/.test(pem))
        throw new HeptadError(
          'RUNTIME_SIGNER_INVALID',
          'that is a private key file; give its .pub (public key) file',
        );
      const s = await (await ctx.client()).request<Record<string, unknown>>('POST', '/v1/runtime-signers', {
        publicKeyPem: pem,
      });
      return { data: s, text: `${s['keyId']}\n` };
    },
  },
  {
    path: ['runtime', 'signer', 'list'],
    summary: 'List the platform runtime-signing keys',
    args: [],
    options: [],
    service: true,
    async run(ctx) {
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        '/v1/runtime-signers',
      );
      return {
        data: { items },
        table: {
          columns: [
            { header: 'KEY ID', get: (r) => r['keyId'] },
            { header: 'ADDED', get: (r) => r['createdAt'] },
          ],
          rows: items,
        },
      };
    },
  },
  {
    path: ['runtime', 'publish'],
    summary: 'Publish a platform-signed runtime package to the retail-eval feed (operator)',
    description:
      'The package must verify against a registered runtime-signing key. Evaluation device groups ' +
      '(feed retail-eval) are offered it at once; promote it to reach retail groups. Its digest becomes ' +
      'known to attestation.',
    args: [
      { name: 'FILE', description: 'runtime package (runtime pack, then runtime sign)', required: true },
    ],
    options: [
      {
        name: 'feed',
        type: 'string',
        valueName: 'retail-eval',
        description: 'the feed (releases start on retail-eval)',
      },
    ],
    service: true,
    async run(ctx) {
      const feed = str(ctx, 'feed') ?? 'retail-eval';
      if (feed !== 'retail-eval')
        throw new HeptadError(
          'CLI_USAGE',
          'releases are published to retail-eval; then heptad runtime promote --to retail',
        );
      const bytes = readFileArg(ctx, String(str(ctx, 'FILE')), 'package');
      const r = await (await ctx.client()).upload<Record<string, unknown>>('/v1/runtime-releases', bytes);
      return { data: r, table: { columns: RELEASE_COLUMNS, rows: [r] } };
    },
  },
  {
    path: ['runtime', 'promote'],
    summary: 'Promote a runtime release from retail-eval to retail (operator)',
    args: [{ name: 'RELEASE', description: 'version or package digest', required: true }],
    options: [
      {
        name: 'to',
        type: 'string',
        valueName: 'retail',
        description: 'the feed to promote to',
        required: true,
      },
    ],
    service: true,
    async run(ctx) {
      if (str(ctx, 'to') !== 'retail') throw new HeptadError('CLI_USAGE', '--to must be retail');
      const r = await (await ctx.client()).request<Record<string, unknown>>(
        'POST',
        `/v1/runtime-releases/${ref(ctx)}/promote`,
        { feed: 'retail' },
      );
      return { data: r, table: { columns: RELEASE_COLUMNS, rows: [r] } };
    },
  },
  {
    path: ['runtime', 'withdraw'],
    summary: 'Withdraw a runtime release: never offered again (operator)',
    args: [{ name: 'RELEASE', description: 'version or package digest', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const r = await (await ctx.client()).request<Record<string, unknown>>(
        'POST',
        `/v1/runtime-releases/${ref(ctx)}/withdraw`,
      );
      return { data: r, table: { columns: RELEASE_COLUMNS, rows: [r] } };
    },
  },
  {
    path: ['runtime', 'list'],
    summary: 'List the runtime releases, newest first',
    args: [],
    options: [],
    service: true,
    async run(ctx) {
      const { items } = await (await ctx.client()).request<{ items: Array<Record<string, unknown>> }>(
        'GET',
        '/v1/runtime-releases',
      );
      return { data: { items }, table: { columns: RELEASE_COLUMNS, rows: items } };
    },
  },
  {
    path: ['runtime', 'download'],
    summary: 'Download a runtime release package',
    args: [{ name: 'RELEASE', description: 'version or package digest', required: true }],
    options: [
      { name: 'out', type: 'string', valueName: 'FILE', description: 'file to write', required: true },
    ],
    service: true,
    async run(ctx) {
      const bytes = await (await ctx.client()).download(`/v1/runtime-releases/${ref(ctx)}/content`);
      const out = path(ctx, 'out');
      writeFileAtomic(out, bytes, 0o644);
      return { data: { file: out, size: bytes.length }, text: `Wrote ${out} (${bytes.length} bytes)\n` };
    },
  },
  {
    path: ['device-group', 'runtime'],
    summary: "The runtime release a device group's feed offers now",
    args: [{ name: 'GROUP', description: 'device group id or "Product/Group"', required: true }],
    options: [],
    service: true,
    async run(ctx) {
      const g = encodeURIComponent(String(str(ctx, 'GROUP')));
      const r = await (await ctx.client()).request<Record<string, unknown>>(
        'GET',
        `/v1/device-groups/${g}/runtime`,
      );
      return { data: r, table: { columns: RELEASE_COLUMNS, rows: [r] } };
    },
  },
];
