/**
 * Whether an app fits a device (docs/formats/app-manifest.md §7): its peripherals exist on the
 * board with the right type and belong to no other app, its server ports are no other app's, and
 * its identity (component id, name) does not collide with an installed app. Also which apps may
 * talk to each other (§3.3), and whether an app may connect to a host (§4.2). Pure: the device
 * passes in its board and the manifests of its installed apps.
 */
import { type ErrorCode, type FieldError, HeptadError } from '../errors.ts';
import {
  type AppManifest,
  type BoardDefinition,
  type BoardPeripheral,
  PERIPHERAL_CAPABILITY,
  PERIPHERAL_TYPES,
} from './format.ts';
import { hostRulesAllow } from './host.ts';

/** One reason an app does not fit a device. */
export interface DeviceProblem extends FieldError {
  readonly code: DeviceCheckCode;
}

export type DeviceCheckCode =
  | 'APP_COMPONENT_CONFLICT'
  | 'APP_NAME_TAKEN'
  | 'APP_PERIPHERAL_UNKNOWN'
  | 'APP_PERIPHERAL_TYPE_MISMATCH'
  | 'APP_PERIPHERAL_TAKEN'
  | 'APP_PORT_TAKEN';

/** §7: the order in which codes are chosen when an app has problems of several kinds. */
export const DEVICE_CHECK_ORDER: readonly DeviceCheckCode[] = [
  'APP_COMPONENT_CONFLICT',
  'APP_NAME_TAKEN',
  'APP_PERIPHERAL_UNKNOWN',
  'APP_PERIPHERAL_TYPE_MISMATCH',
  'APP_PERIPHERAL_TAKEN',
  'APP_PORT_TAKEN',
];

export interface DeviceFit {
  /** The board peripherals the app gets, in manifest order. */
  readonly peripherals: readonly BoardPeripheral[];
  /** Component ids of installed apps this app may talk to (both list each other). */
  readonly applicationConnections: readonly string[];
  /** The installed app with the same component id that this one replaces (an update), if any. */
  readonly replaces: AppManifest | undefined;
}

/**
 * Checks that an app fits the device (§7) and returns what it gets, or throws one HeptadError
 * whose code is the first kind of problem in DEVICE_CHECK_ORDER; `fields` lists every problem of
 * every kind, and `detail.problems` gives each one its code. An installed app with the same
 * component id is the one being replaced: its peripherals and ports are not in the way.
 */
export function checkAppAgainstDevice(
  manifest: AppManifest,
  board: BoardDefinition,
  installed: readonly AppManifest[],
): DeviceFit {
  const problems: DeviceProblem[] = [];
  const add = (code: DeviceCheckCode, field: string, problem: string) =>
    problems.push({ code, field, problem });

  const replaces = installed.find((a) => a.componentId === manifest.componentId);
  if (replaces !== undefined && replaces.name !== manifest.name) {
    add(
      'APP_COMPONENT_CONFLICT',
      '/ComponentId',
      `is installed under the name ${JSON.stringify(replaces.name)}`,
    );
  }
  const others = installed.filter((a) => a.componentId !== manifest.componentId);
  // Ignoring case, like package paths: a name may become a folder or a log label on a system
  // that folds case, where "Blink" and "blink" would be one.
  const sameName = others.find((a) => a.name.toLowerCase() === manifest.name.toLowerCase());
  if (sameName !== undefined) {
    add('APP_NAME_TAKEN', '/Name', `is the name of the installed app ${sameName.componentId}`);
  }

  const owners = new Map<string, AppManifest>();
  for (const app of others) {
    for (const type of PERIPHERAL_TYPES)
      for (const n of app.capabilities.peripherals[type]) owners.set(n, app);
  }
  const granted: BoardPeripheral[] = [];
  for (const type of PERIPHERAL_TYPES) {
    const cap = PERIPHERAL_CAPABILITY[type];
    for (const [i, n] of manifest.capabilities.peripherals[type].entries()) {
      const at = `/Capabilities/${cap}/${i}`;
      const peripheral = board.peripherals.get(n);
      if (peripheral === undefined) {
        const near = [...board.peripherals.keys()].find((k) => k.toLowerCase() === n.toLowerCase());
        const hint = near === undefined ? '' : ` (names are case-sensitive: did you mean "${near}"?)`;
        add('APP_PERIPHERAL_UNKNOWN', at, `${n} is not a peripheral of board ${board.name}${hint}`);
        continue;
      }
      if (peripheral.type !== type) {
        add(
          'APP_PERIPHERAL_TYPE_MISMATCH',
          at,
          `${n} is a ${peripheral.type} peripheral; request it under ${PERIPHERAL_CAPABILITY[peripheral.type]}`,
        );
        continue;
      }
      const owner = owners.get(n);
      if (owner !== undefined) {
        add('APP_PERIPHERAL_TAKEN', at, `${n} belongs to the installed app ${owner.name}`);
        continue;
      }
      granted.push(peripheral);
    }
  }

  for (const [key, proto] of [
    ['AllowedTcpServerPorts', 'allowedTcpServerPorts'],
    ['AllowedUdpServerPorts', 'allowedUdpServerPorts'],
  ] as const) {
    for (const [i, port] of manifest.capabilities[proto].entries()) {
      const owner = others.find((a) => a.capabilities[proto].includes(port));
      if (owner !== undefined) {
        add(
          'APP_PORT_TAKEN',
          `/Capabilities/${key}/${i}`,
          `port ${port} belongs to the installed app ${owner.name}`,
        );
      }
    }
  }

  if (problems.length > 0) {
    const code: ErrorCode =
      DEVICE_CHECK_ORDER.find((c) => problems.some((x) => x.code === c)) ?? 'APP_PERIPHERAL_UNKNOWN';
    throw new HeptadError(code, `the app ${manifest.name} does not fit this device`, {
      fields: problems.map(({ field, problem }) => ({ field, problem })),
      detail: { problems },
    });
  }
  return Object.freeze({
    peripherals: Object.freeze(granted),
    applicationConnections: Object.freeze(
      others.filter((a) => appsMayConnect(manifest, a)).map((a) => a.componentId),
    ),
    replaces,
  });
}

/**
 * §3.3: two apps may talk only when each lists the other's component id in
 * AllowedApplicationConnections; a one-sided listing grants nothing (so a compromised app cannot
 * reach another app by naming it). An app never "connects" to itself this way.
 */
export function appsMayConnect(a: AppManifest, b: AppManifest): boolean {
  return (
    a.componentId !== b.componentId &&
    a.capabilities.allowedApplicationConnections.includes(b.componentId) &&
    b.capabilities.allowedApplicationConnections.includes(a.componentId)
  );
}

/**
 * §4.2: whether the manifest allows an outbound connection to host:port. Names match
 * case-insensitively and without a trailing dot; `*.example.com` matches one or more labels in
 * front of example.com but not example.com itself; IP literals match the same address (IPv6 in
 * any spelling, IPv4-mapped IPv6 as IPv4); a rule without a port allows every port. A host that
 * is not ASCII, or is not a valid name or IP literal, is never allowed. Never throws.
 */
export function connectionAllowed(manifest: AppManifest, host: string, port: number): boolean {
  return hostRulesAllow(manifest.capabilities.allowedConnections, host, port);
}
