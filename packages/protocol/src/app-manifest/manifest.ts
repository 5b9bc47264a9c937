/**
 * The app manifest parser (docs/formats/app-manifest.md §2–§4, §6): one pure function that turns
 * untrusted JSON into a normalized, frozen AppManifest or throws one APP_MANIFEST_INVALID that
 * lists every problem with its JSON pointer. The service runs it on every upload; the device runs
 * it again before it installs an app, and enforces the result.
 */
import { pathProblem } from '../package/manifest.ts';
import {
  APP_MANIFEST_SCHEMA_VERSION,
  type AppCapabilities,
  type AppManifest,
  type AppManifestLimits,
  DEFAULT_APP_MANIFEST_LIMITS,
  MAX_ALLOWED_CONNECTIONS,
  MAX_APP_MANIFEST_TEXT_BYTES,
  MAX_APPLICATION_CONNECTIONS,
  MAX_CMD_ARG_BYTES,
  MAX_CMD_ARGS,
  MAX_CMD_ARGS_TOTAL_BYTES,
  MAX_PERIPHERAL_NAME_LENGTH,
  MAX_PERIPHERALS_PER_CAPABILITY,
  MAX_SERVER_PORTS,
  PERIPHERAL_CAPABILITY,
  PERIPHERAL_TYPES,
  type PeripheralType,
  POWER_CONTROLS,
  type PowerControl,
} from './format.ts';
import { formatHostRule, type HostRule, parseHostRule } from './host.ts';
import {
  isCleanString,
  isJsonObject,
  own,
  Problems,
  parseJsonText,
  pointer,
  refuseUnknownKeys,
} from './json.ts';

export interface AppManifestOptions {
  readonly limits?: Partial<AppManifestLimits>;
  /** The tenant the app belongs to: `DeviceAuthentication`, when present, must name it. */
  readonly tenantId?: string;
  /** The image package manifest the app manifest travels in: ComponentId, Name and EntryPoint must equal its own. */
  readonly image?: { readonly componentId: string; readonly name: string; readonly entryPoint: string };
  /** The package's file paths: `EntryPoint` must be one of them. */
  readonly files?: Iterable<string>;
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NIL_UUID = '00000000-0000-0000-0000-000000000000';
/** The image package's name rule (image-package.md §3), so one name fits both. */
const APP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const PERIPHERAL_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

const TOP_LEVEL = ['SchemaVersion', 'Name', 'ComponentId', 'EntryPoint', 'CmdArgs', 'Capabilities'];
const CAPABILITIES = [
  'AllowedConnections',
  'AllowedTcpServerPorts',
  'AllowedUdpServerPorts',
  'AllowedApplicationConnections',
  'Gpio',
  'Uart',
  'I2cMaster',
  'SpiMaster',
  'Pwm',
  'Adc',
  'MutableStorage',
  'DeviceAuthentication',
  'PowerControls',
  'SystemEventNotifications',
  'SoftwareUpdateDeferral',
  'NetworkConfig',
  'TimeSyncConfig',
];
/**
 * Azure Sphere manifest fields with no Heptad meaning (§3.5). Refused like any unknown field, with
 * a problem that says why, so a manifest ported from Azure Sphere gets a clear answer.
 */
const AZURE_SPHERE_ONLY = new Set([
  'ApplicationType',
  'MallocVersion',
  'TargetApplicationRuntimeVersion',
  'TargetBetaApis',
  'CertStore',
  'DhcpService',
  'EnterpriseWifiConfig',
  'ExternalInterrupt',
  'HardwareAddressConfig',
  'HeapMemStats',
  'I2sSubordinate',
  'ReadNetworkProxyConfig',
  'ResetMemoryWatermarks',
  'SntpService',
  'SystemTime',
  'WifiConfig',
]);

const uuidProblem = (v: unknown): string | undefined => {
  if (typeof v !== 'string' || !UUID.test(v))
    return 'must be a lowercase UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)';
  if (v === NIL_UUID) return 'must not be the nil UUID';
  return undefined;
};

/** Reads an array field: undefined when absent, null (after reporting) when not an array or too long. */
function list(
  caps: Record<string, unknown>,
  key: string,
  at: string,
  max: number,
  p: Problems,
): readonly unknown[] | undefined | null {
  const v = own(caps, key);
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) {
    p.add(at, 'must be an array');
    return null;
  }
  if (v.length > max) {
    p.add(at, `has ${v.length} entries; at most ${max} are allowed`);
    return null;
  }
  return Array.from(v);
}

function bool(caps: Record<string, unknown>, key: string, at: string, p: Problems): boolean {
  const v = own(caps, key);
  if (v === undefined) return false;
  if (typeof v !== 'boolean') {
    p.add(at, 'must be true or false');
    return false;
  }
  return v;
}

function ports(caps: Record<string, unknown>, key: string, p: Problems): number[] {
  const at = pointer('/Capabilities', key);
  const v = list(caps, key, at, MAX_SERVER_PORTS, p);
  if (!v) return [];
  const out: number[] = [];
  for (const [i, port] of v.entries()) {
    if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) {
      p.add(pointer(at, i), 'must be an integer port from 1 to 65535');
    } else if (out.includes(port as number)) {
      p.add(pointer(at, i), `repeats port ${port}`);
    } else out.push(port as number);
  }
  return out;
}

/**
 * Checks an app manifest (§3) and returns it normalized, or throws APP_MANIFEST_INVALID listing
 * every problem (`fields`: JSON pointer and problem). Keys are case-sensitive and unknown keys
 * are refused: a key one parser ignores could be one another honours. Never throws anything else
 * for a JSON value, or for any plain data (the property tests feed both); objects with getters or
 * proxies are not data and are outside that promise.
 */
export function parseAppManifest(json: unknown, opts: AppManifestOptions = {}): AppManifest {
  const limits: AppManifestLimits = { ...DEFAULT_APP_MANIFEST_LIMITS, ...opts.limits };
  const p = new Problems();
  if (!isJsonObject(json)) {
    p.add('', 'must be a JSON object');
    p.throwIfAny('APP_MANIFEST_INVALID', 'the app manifest is not valid');
  }
  const m = json as Record<string, unknown>;
  refuseUnknownKeys(m, TOP_LEVEL, '', p, 'an app manifest field');

  const schema = own(m, 'SchemaVersion');
  if (schema === undefined) p.add('/SchemaVersion', 'is required');
  else if (schema !== APP_MANIFEST_SCHEMA_VERSION) p.add('/SchemaVersion', 'must be 1');

  const name = own(m, 'Name');
  if (name === undefined) p.add('/Name', 'is required');
  else if (typeof name !== 'string' || !APP_NAME.test(name)) {
    p.add('/Name', 'must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit');
  } else if (opts.image && name !== opts.image.name) {
    p.add('/Name', `must equal the image package's name ${JSON.stringify(opts.image.name)}`);
  }

  const componentId = own(m, 'ComponentId');
  if (componentId === undefined) p.add('/ComponentId', 'is required');
  else {
    const problem = uuidProblem(componentId);
    if (problem !== undefined) p.add('/ComponentId', problem);
    else if (opts.image && componentId !== opts.image.componentId) {
      p.add('/ComponentId', "must equal the image package's componentId");
    }
  }

  const entryPoint = own(m, 'EntryPoint');
  if (entryPoint === undefined) p.add('/EntryPoint', 'is required');
  else if (typeof entryPoint !== 'string') p.add('/EntryPoint', 'must be a string');
  else {
    const problem = pathProblem(entryPoint);
    if (problem !== undefined) {
      p.add('/EntryPoint', `must be a relative package path (bin/app, not /bin/app): it ${problem}`);
    } else if (opts.image && entryPoint !== opts.image.entryPoint) {
      p.add('/EntryPoint', "must equal the image package's entryPoint");
    } else if (opts.files && !new Set(opts.files).has(entryPoint)) {
      p.add('/EntryPoint', 'is not a file of the package');
    }
  }

  const cmdArgs: string[] = [];
  const args = own(m, 'CmdArgs');
  if (args !== undefined) {
    if (!Array.isArray(args)) p.add('/CmdArgs', 'must be an array of strings');
    else if (args.length > MAX_CMD_ARGS)
      p.add('/CmdArgs', `has ${args.length} entries; at most ${MAX_CMD_ARGS}`);
    else {
      let total = 0;
      for (const [i, a] of Array.from(args as unknown[]).entries()) {
        if (!isCleanString(a)) p.add(`/CmdArgs/${i}`, 'must be a string without control characters');
        else if (Buffer.byteLength(a) > MAX_CMD_ARG_BYTES) {
          p.add(`/CmdArgs/${i}`, `is longer than ${MAX_CMD_ARG_BYTES} bytes`);
        } else {
          total += Buffer.byteLength(a);
          cmdArgs.push(a);
        }
      }
      if (total > MAX_CMD_ARGS_TOTAL_BYTES) {
        p.add('/CmdArgs', `has ${total} bytes in all; at most ${MAX_CMD_ARGS_TOTAL_BYTES}`);
      }
    }
  }

  const capsValue = own(m, 'Capabilities');
  let capabilities: AppCapabilities | undefined;
  if (capsValue === undefined) p.add('/Capabilities', 'is required (an empty object grants nothing)');
  else if (!isJsonObject(capsValue)) p.add('/Capabilities', 'must be an object');
  else
    capabilities = parseCapabilities(
      capsValue,
      typeof componentId === 'string' ? componentId : '',
      limits,
      opts,
      p,
    );

  p.throwIfAny('APP_MANIFEST_INVALID', 'the app manifest is not valid');
  return deepFreeze({
    schemaVersion: 1,
    name: name as string,
    componentId: componentId as string,
    entryPoint: entryPoint as string,
    cmdArgs,
    capabilities: capabilities as AppCapabilities,
  });
}

function parseCapabilities(
  caps: Record<string, unknown>,
  componentId: string,
  limits: AppManifestLimits,
  opts: AppManifestOptions,
  p: Problems,
): AppCapabilities {
  for (const k of Object.keys(caps)) {
    if (AZURE_SPHERE_ONLY.has(k))
      p.add(pointer('/Capabilities', k), 'is an Azure Sphere capability Heptad does not have');
  }
  refuseUnknownKeys(caps, CAPABILITIES, '/Capabilities', p, 'a capability', AZURE_SPHERE_ONLY);

  const allowedConnections: HostRule[] = [];
  const conns = list(
    caps,
    'AllowedConnections',
    '/Capabilities/AllowedConnections',
    MAX_ALLOWED_CONNECTIONS,
    p,
  );
  const seenRules = new Set<string>();
  for (const [i, entry] of (conns ?? []).entries()) {
    const at = `/Capabilities/AllowedConnections/${i}`;
    if (typeof entry !== 'string') {
      p.add(at, 'must be a string');
      continue;
    }
    if (entry.length > 300) {
      p.add(at, 'is longer than 300 characters');
      continue;
    }
    const rule = parseHostRule(entry);
    if (typeof rule === 'string') {
      p.add(at, rule);
      continue;
    }
    const key = formatHostRule(rule);
    if (seenRules.has(key)) {
      p.add(at, `repeats ${key}`);
      continue;
    }
    seenRules.add(key);
    allowedConnections.push(rule);
  }

  const allowedTcpServerPorts = ports(caps, 'AllowedTcpServerPorts', p);
  const allowedUdpServerPorts = ports(caps, 'AllowedUdpServerPorts', p);

  const allowedApplicationConnections: string[] = [];
  const apps = list(
    caps,
    'AllowedApplicationConnections',
    '/Capabilities/AllowedApplicationConnections',
    MAX_APPLICATION_CONNECTIONS,
    p,
  );
  for (const [i, id] of (apps ?? []).entries()) {
    const at = `/Capabilities/AllowedApplicationConnections/${i}`;
    const problem = uuidProblem(id);
    if (problem !== undefined) {
      p.add(at, `${problem} (a component id)`);
      continue;
    }
    if (id === componentId) {
      p.add(at, "is the app's own component id");
      continue;
    }
    if (allowedApplicationConnections.includes(id as string)) {
      p.add(at, `repeats ${id}`);
      continue;
    }
    allowedApplicationConnections.push(id as string);
  }

  // A peripheral has one type, so one name in two capability lists is always a mistake.
  const requestedIn = new Map<string, string>();
  const peripherals = {} as Record<PeripheralType, string[]>;
  for (const type of PERIPHERAL_TYPES) {
    const cap = PERIPHERAL_CAPABILITY[type];
    const names: string[] = [];
    peripherals[type] = names;
    const v = list(caps, cap, `/Capabilities/${cap}`, MAX_PERIPHERALS_PER_CAPABILITY, p);
    for (const [i, n] of (v ?? []).entries()) {
      const at = `/Capabilities/${cap}/${i}`;
      if (typeof n !== 'string' || !PERIPHERAL_NAME.test(n)) {
        const hint =
          typeof n === 'number'
            ? ' (a board peripheral name such as "LED1", not a pin number)'
            : typeof n === 'string' && n.startsWith('$')
              ? ' (without "$": Heptad reads names from the board definition, not from a hardware definition header)'
              : '';
        p.add(
          at,
          `must be a peripheral name: a letter, then up to ${MAX_PERIPHERAL_NAME_LENGTH - 1} of [A-Za-z0-9_-]${hint}`,
        );
        continue;
      }
      const other = requestedIn.get(n);
      if (other === cap) {
        p.add(at, `repeats ${n}`);
        continue;
      }
      if (other !== undefined) {
        p.add(at, `is also requested under ${other}; a peripheral has one type`);
        continue;
      }
      requestedIn.set(n, cap);
      names.push(n);
    }
  }

  let mutableStorageKB = 0;
  const storage = own(caps, 'MutableStorage');
  if (storage !== undefined) {
    if (!isJsonObject(storage)) p.add('/Capabilities/MutableStorage', 'must be an object { "SizeKB": n }');
    else {
      refuseUnknownKeys(storage, ['SizeKB'], '/Capabilities/MutableStorage', p, 'a MutableStorage field');
      const size = own(storage, 'SizeKB');
      if (!Number.isInteger(size) || (size as number) < 1 || (size as number) > limits.maxMutableStorageKB) {
        p.add(
          '/Capabilities/MutableStorage/SizeKB',
          `must be an integer from 1 to ${limits.maxMutableStorageKB}`,
        );
      } else mutableStorageKB = size as number;
    }
  }

  let deviceAuthentication: string | null = null;
  const tenant = own(caps, 'DeviceAuthentication');
  if (tenant !== undefined) {
    const problem = uuidProblem(tenant);
    if (problem !== undefined) p.add('/Capabilities/DeviceAuthentication', `${problem} (the tenant id)`);
    else if (opts.tenantId !== undefined && tenant !== opts.tenantId) {
      p.add('/Capabilities/DeviceAuthentication', "is not the id of the app's tenant");
    } else deviceAuthentication = tenant as string;
  }

  const powerControls: PowerControl[] = [];
  for (const [i, c] of (
    list(caps, 'PowerControls', '/Capabilities/PowerControls', POWER_CONTROLS.length, p) ?? []
  ).entries()) {
    const at = `/Capabilities/PowerControls/${i}`;
    if (!POWER_CONTROLS.includes(c as PowerControl)) {
      p.add(at, `must be one of ${POWER_CONTROLS.join(', ')}`);
      continue;
    }
    if (powerControls.includes(c as PowerControl)) {
      p.add(at, `repeats ${c}`);
      continue;
    }
    powerControls.push(c as PowerControl);
  }

  const systemEventNotifications = bool(
    caps,
    'SystemEventNotifications',
    '/Capabilities/SystemEventNotifications',
    p,
  );
  const softwareUpdateDeferral = bool(
    caps,
    'SoftwareUpdateDeferral',
    '/Capabilities/SoftwareUpdateDeferral',
    p,
  );
  // A deferral answers an "update pending" event, which only an app that receives events sees.
  if (softwareUpdateDeferral && !systemEventNotifications) {
    p.add('/Capabilities/SoftwareUpdateDeferral', 'needs "SystemEventNotifications": true');
  }
  return {
    allowedConnections,
    allowedTcpServerPorts,
    allowedUdpServerPorts,
    allowedApplicationConnections,
    peripherals,
    mutableStorageKB,
    deviceAuthentication,
    powerControls,
    systemEventNotifications,
    softwareUpdateDeferral,
    networkConfig: bool(caps, 'NetworkConfig', '/Capabilities/NetworkConfig', p),
    timeSyncConfig: bool(caps, 'TimeSyncConfig', '/Capabilities/TimeSyncConfig', p),
  };
}

/**
 * `app_manifest.json` as text or UTF-8 bytes (§6: at most 32 KiB, no byte order mark) → a parsed
 * manifest. Duplicate keys cannot be seen after JSON.parse (the last one wins); the image package
 * stores the manifest as canonical JSON, so what is signed has none.
 */
export function parseAppManifestText(text: string | Uint8Array, opts: AppManifestOptions = {}): AppManifest {
  return parseAppManifest(
    parseJsonText(text, MAX_APP_MANIFEST_TEXT_BYTES, 'APP_MANIFEST_INVALID', 'app manifest'),
    opts,
  );
}

export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    if (value instanceof Map) for (const v of value.values()) deepFreeze(v);
    else for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
