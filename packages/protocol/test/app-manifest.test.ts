// The app manifest parser (docs/formats/app-manifest.md §2–§3, §6): a valid manifest is
// normalized and frozen; every refusal is fed its bad input and must come back as ONE
// APP_MANIFEST_INVALID naming the exact JSON pointer; several problems are all listed at once.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type AppManifestOptions,
  HeptadError,
  MAX_APP_MANIFEST_TEXT_BYTES,
  parseAppManifest,
  parseAppManifestText,
} from '../src/index.ts';

const CID = '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b';
const OTHER = 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d';
const TENANT = '0b5c7f3e-8d2a-4c1e-9f60-2a7d4e9b1c35';

type Json = Record<string, unknown>;
const base = (): Json => ({
  SchemaVersion: 1,
  Name: 'telemetry',
  ComponentId: CID,
  EntryPoint: 'bin/main.js',
  CmdArgs: ['--interval', '60'],
  Capabilities: {
    AllowedConnections: [
      'telemetry.example.com:443',
      '*.azure-devices.net',
      '192.0.2.10:8883',
      '[2001:db8::1]:443',
    ],
    AllowedTcpServerPorts: [8080],
    AllowedUdpServerPorts: [5353],
    AllowedApplicationConnections: [OTHER],
    Gpio: ['LED1', 'BUTTON_A'],
    Uart: ['UART1'],
    I2cMaster: ['I2C1'],
    SpiMaster: ['SPI0'],
    Pwm: ['PWM0'],
    Adc: ['ADC0'],
    MutableStorage: { SizeKB: 64 },
    DeviceAuthentication: TENANT,
    PowerControls: ['ForceReboot', 'SetPowerProfile'],
    SystemEventNotifications: true,
    SoftwareUpdateDeferral: true,
    NetworkConfig: false,
    TimeSyncConfig: true,
  },
});
const caps = (m: Json) => m['Capabilities'] as Json;

/** Asserts one APP_MANIFEST_INVALID whose fields name exactly these pointers (in any order). */
function refused(input: unknown, pointers: readonly string[], opts?: AppManifestOptions): HeptadError {
  let caught: unknown;
  try {
    parseAppManifest(input, opts);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof HeptadError, `expected a HeptadError, got ${String(caught)}`);
  assert.equal(caught.code, 'APP_MANIFEST_INVALID');
  assert.deepEqual([...caught.fields.map((f) => f.field)].sort(), [...pointers].sort());
  return caught;
}

describe('parseAppManifest: valid manifests', () => {
  test('normalizes every capability of a full manifest', () => {
    const m = parseAppManifest(base());
    assert.equal(m.schemaVersion, 1);
    assert.equal(m.name, 'telemetry');
    assert.equal(m.componentId, CID);
    assert.equal(m.entryPoint, 'bin/main.js');
    assert.deepEqual(m.cmdArgs, ['--interval', '60']);
    const c = m.capabilities;
    assert.deepEqual(c.allowedConnections, [
      { kind: 'name', host: 'telemetry.example.com', port: 443 },
      { kind: 'wildcard', suffix: 'azure-devices.net', port: null },
      { kind: 'ipv4', host: '192.0.2.10', port: 8883 },
      { kind: 'ipv6', host: '2001:db8::1', port: 443 },
    ]);
    assert.deepEqual(c.allowedTcpServerPorts, [8080]);
    assert.deepEqual(c.allowedUdpServerPorts, [5353]);
    assert.deepEqual(c.allowedApplicationConnections, [OTHER]);
    assert.deepEqual(c.peripherals, {
      gpio: ['LED1', 'BUTTON_A'],
      uart: ['UART1'],
      i2c: ['I2C1'],
      spi: ['SPI0'],
      pwm: ['PWM0'],
      adc: ['ADC0'],
    });
    assert.equal(c.mutableStorageKB, 64);
    assert.equal(c.deviceAuthentication, TENANT);
    assert.deepEqual(c.powerControls, ['ForceReboot', 'SetPowerProfile']);
    assert.equal(c.systemEventNotifications, true);
    assert.equal(c.softwareUpdateDeferral, true);
    assert.equal(c.networkConfig, false);
    assert.equal(c.timeSyncConfig, true);
  });

  test('a minimal manifest grants nothing', () => {
    const m = parseAppManifest({
      SchemaVersion: 1,
      Name: 'a',
      ComponentId: CID,
      EntryPoint: 'main.js',
      Capabilities: {},
    });
    assert.deepEqual(m.cmdArgs, []);
    assert.deepEqual(m.capabilities, {
      allowedConnections: [],
      allowedTcpServerPorts: [],
      allowedUdpServerPorts: [],
      allowedApplicationConnections: [],
      peripherals: { gpio: [], uart: [], i2c: [], spi: [], pwm: [], adc: [] },
      mutableStorageKB: 0,
      deviceAuthentication: null,
      powerControls: [],
      systemEventNotifications: false,
      softwareUpdateDeferral: false,
      networkConfig: false,
      timeSyncConfig: false,
    });
  });

  test('the result is deeply frozen and shares no array with the input', () => {
    const input = base();
    const m = parseAppManifest(input);
    assert.ok(Object.isFrozen(m) && Object.isFrozen(m.capabilities) && Object.isFrozen(m.cmdArgs));
    assert.ok(
      Object.isFrozen(m.capabilities.peripherals.gpio) &&
        Object.isFrozen(m.capabilities.allowedConnections[0]),
    );
    assert.throws(() => (m.capabilities.allowedTcpServerPorts as number[]).push(22), TypeError);
    (caps(input)['Gpio'] as string[]).push('LED9');
    assert.deepEqual(m.capabilities.peripherals.gpio, ['LED1', 'BUTTON_A']);
  });

  test('an object without prototype (as some JSON readers make) is accepted', () => {
    const m = Object.assign(Object.create(null), base(), {
      Capabilities: Object.assign(Object.create(null), {}),
    });
    assert.equal(parseAppManifest(m).name, 'telemetry');
  });

  test('matching image package, files and tenant are accepted', () => {
    const m = parseAppManifest(base(), {
      image: { componentId: CID, name: 'telemetry', entryPoint: 'bin/main.js' },
      files: ['bin/main.js', 'lib/x.js'],
      tenantId: TENANT,
      limits: { maxMutableStorageKB: 64 },
    });
    assert.equal(m.capabilities.mutableStorageKB, 64);
  });
});

describe('parseAppManifest: every refusal', () => {
  const cases: [string, (m: Json) => unknown, string[], AppManifestOptions?][] = [
    ['400/not an object: array', () => [base()], ['']],
    ['400/not an object: null', () => null, ['']],
    ['400/not an object: string', () => 'app_manifest.json', ['']],
    ['400/not an object: class instance', () => new Date(0), ['']],
    ['400/unknown top-level field', (m) => ({ ...m, Extra: 1 }), ['/Extra']],
    ['400/key in another case', (m) => ({ ...m, entrypoint: 'x' }), ['/entrypoint']],
    [
      '400/own __proto__ key',
      () => JSON.parse(`{"__proto__":{"Name":"x"},${JSON.stringify(base()).slice(1)}`),
      ['/__proto__'],
    ],
    ['400/SchemaVersion missing', (m) => ({ ...m, SchemaVersion: undefined }), ['/SchemaVersion']],
    ['400/SchemaVersion 2', (m) => ({ ...m, SchemaVersion: 2 }), ['/SchemaVersion']],
    ['400/SchemaVersion "1"', (m) => ({ ...m, SchemaVersion: '1' }), ['/SchemaVersion']],
    ['400/Name missing', (m) => ({ ...m, Name: undefined }), ['/Name']],
    ['400/Name empty', (m) => ({ ...m, Name: '' }), ['/Name']],
    ['400/Name with a space', (m) => ({ ...m, Name: 'my app' }), ['/Name']],
    ['400/Name of 65 characters', (m) => ({ ...m, Name: 'a'.repeat(65) }), ['/Name']],
    ['400/Name starting with a dot', (m) => ({ ...m, Name: '.app' }), ['/Name']],
    ['400/Name not a string', (m) => ({ ...m, Name: 7 }), ['/Name']],
    ['400/ComponentId missing', (m) => ({ ...m, ComponentId: undefined }), ['/ComponentId']],
    ['400/ComponentId uppercase', (m) => ({ ...m, ComponentId: CID.toUpperCase() }), ['/ComponentId']],
    ['400/ComponentId in braces', (m) => ({ ...m, ComponentId: `{${CID}}` }), ['/ComponentId']],
    [
      '400/ComponentId nil',
      (m) => ({ ...m, ComponentId: '00000000-0000-0000-0000-000000000000' }),
      ['/ComponentId'],
    ],
    ['400/EntryPoint missing', (m) => ({ ...m, EntryPoint: undefined }), ['/EntryPoint']],
    [
      '400/EntryPoint absolute (Azure Sphere style)',
      (m) => ({ ...m, EntryPoint: '/bin/app' }),
      ['/EntryPoint'],
    ],
    ['400/EntryPoint traversal', (m) => ({ ...m, EntryPoint: 'bin/../../etc/passwd' }), ['/EntryPoint']],
    ['400/EntryPoint backslash', (m) => ({ ...m, EntryPoint: 'bin\\app' }), ['/EntryPoint']],
    ['400/EntryPoint not a string', (m) => ({ ...m, EntryPoint: ['bin/app'] }), ['/EntryPoint']],
    ['400/CmdArgs not an array', (m) => ({ ...m, CmdArgs: '--x' }), ['/CmdArgs']],
    ['400/CmdArgs 33 entries', (m) => ({ ...m, CmdArgs: Array(33).fill('a') }), ['/CmdArgs']],
    ['400/CmdArgs number', (m) => ({ ...m, CmdArgs: ['a', 1] }), ['/CmdArgs/1']],
    ['400/CmdArgs NUL', (m) => ({ ...m, CmdArgs: ['a\u0000b'] }), ['/CmdArgs/0']],
    ['400/CmdArgs newline', (m) => ({ ...m, CmdArgs: ['a\nb'] }), ['/CmdArgs/0']],
    ['400/CmdArgs lone surrogate', (m) => ({ ...m, CmdArgs: ['\ud800'] }), ['/CmdArgs/0']],
    ['400/CmdArgs entry over 1024 bytes', (m) => ({ ...m, CmdArgs: ['é'.repeat(513)] }), ['/CmdArgs/0']],
    [
      '400/CmdArgs over 8192 bytes in all',
      (m) => ({ ...m, CmdArgs: Array(9).fill('a'.repeat(1000)) }),
      ['/CmdArgs'],
    ],
    ['400/Capabilities missing', (m) => ({ ...m, Capabilities: undefined }), ['/Capabilities']],
    ['400/Capabilities array', (m) => ({ ...m, Capabilities: [] }), ['/Capabilities']],
    [
      '400/unknown capability',
      (m) => ({ ...m, Capabilities: { Bluetooth: true } }),
      ['/Capabilities/Bluetooth'],
    ],
    [
      '400/capability in another case',
      (m) => ({ ...m, Capabilities: { gpio: ['LED1'] } }),
      ['/Capabilities/gpio'],
    ],
    [
      '400/Azure Sphere-only capability',
      (m) => ({ ...m, Capabilities: { WifiConfig: true } }),
      ['/Capabilities/WifiConfig'],
    ],
    [
      '400/Azure Sphere-only top-level field',
      (m) => ({ ...m, ApplicationType: 'Default' }),
      ['/ApplicationType'],
    ],
    [
      '400/AllowedConnections not an array',
      (m) => ({ ...m, Capabilities: { AllowedConnections: 'a.com' } }),
      ['/Capabilities/AllowedConnections'],
    ],
    [
      '400/AllowedConnections 101 entries',
      (m) => ({
        ...m,
        Capabilities: { AllowedConnections: Array.from({ length: 101 }, (_, i) => `h${i}.example.com`) },
      }),
      ['/Capabilities/AllowedConnections'],
    ],
    [
      '400/AllowedConnections number',
      (m) => ({ ...m, Capabilities: { AllowedConnections: [443] } }),
      ['/Capabilities/AllowedConnections/0'],
    ],
    [
      '400/AllowedConnections bad host',
      (m) => ({ ...m, Capabilities: { AllowedConnections: ['ok.example.com', 'bad_host.example.com'] } }),
      ['/Capabilities/AllowedConnections/1'],
    ],
    [
      '400/AllowedConnections over 300 characters',
      (m) => ({ ...m, Capabilities: { AllowedConnections: [`${'a.'.repeat(150)}com`] } }),
      ['/Capabilities/AllowedConnections/0'],
    ],
    [
      '400/AllowedConnections repeated after normalizing',
      (m) => ({ ...m, Capabilities: { AllowedConnections: ['Example.com', 'example.com.'] } }),
      ['/Capabilities/AllowedConnections/1'],
    ],
    [
      '400/AllowedConnections IPv6 repeated in another spelling',
      (m) => ({
        ...m,
        Capabilities: { AllowedConnections: ['[2001:db8::1]:443', '[2001:DB8:0:0:0:0:0:1]:443'] },
      }),
      ['/Capabilities/AllowedConnections/1'],
    ],
    [
      '400/TCP port 0',
      (m) => ({ ...m, Capabilities: { AllowedTcpServerPorts: [0] } }),
      ['/Capabilities/AllowedTcpServerPorts/0'],
    ],
    [
      '400/TCP port 65536',
      (m) => ({ ...m, Capabilities: { AllowedTcpServerPorts: [65536] } }),
      ['/Capabilities/AllowedTcpServerPorts/0'],
    ],
    [
      '400/TCP port 80.5',
      (m) => ({ ...m, Capabilities: { AllowedTcpServerPorts: [80.5] } }),
      ['/Capabilities/AllowedTcpServerPorts/0'],
    ],
    [
      '400/TCP port as string',
      (m) => ({ ...m, Capabilities: { AllowedTcpServerPorts: ['80'] } }),
      ['/Capabilities/AllowedTcpServerPorts/0'],
    ],
    [
      '400/TCP port repeated',
      (m) => ({ ...m, Capabilities: { AllowedTcpServerPorts: [80, 81, 80] } }),
      ['/Capabilities/AllowedTcpServerPorts/2'],
    ],
    [
      '400/TCP ports 33',
      (m) => ({
        ...m,
        Capabilities: { AllowedTcpServerPorts: Array.from({ length: 33 }, (_, i) => 1000 + i) },
      }),
      ['/Capabilities/AllowedTcpServerPorts'],
    ],
    [
      '400/UDP port negative',
      (m) => ({ ...m, Capabilities: { AllowedUdpServerPorts: [-53] } }),
      ['/Capabilities/AllowedUdpServerPorts/0'],
    ],
    [
      '400/UDP ports not an array',
      (m) => ({ ...m, Capabilities: { AllowedUdpServerPorts: 53 } }),
      ['/Capabilities/AllowedUdpServerPorts'],
    ],
    [
      '400/AllowedApplicationConnections not a UUID',
      (m) => ({ ...m, Capabilities: { AllowedApplicationConnections: ['blink'] } }),
      ['/Capabilities/AllowedApplicationConnections/0'],
    ],
    [
      '400/AllowedApplicationConnections own id',
      (m) => ({ ...m, Capabilities: { AllowedApplicationConnections: [CID] } }),
      ['/Capabilities/AllowedApplicationConnections/0'],
    ],
    [
      '400/AllowedApplicationConnections repeated',
      (m) => ({ ...m, Capabilities: { AllowedApplicationConnections: [OTHER, OTHER] } }),
      ['/Capabilities/AllowedApplicationConnections/1'],
    ],
    [
      '400/AllowedApplicationConnections 33',
      (m) => ({
        ...m,
        Capabilities: {
          AllowedApplicationConnections: Array.from(
            { length: 33 },
            (_, i) => `${String(i).padStart(8, '0')}-0000-4000-8000-000000000000`,
          ),
        },
      }),
      ['/Capabilities/AllowedApplicationConnections'],
    ],
    [
      '400/Gpio pin number (Azure Sphere RTApp style)',
      (m) => ({ ...m, Capabilities: { Gpio: [8] } }),
      ['/Capabilities/Gpio/0'],
    ],
    [
      '400/Gpio hardware-definition constant',
      (m) => ({ ...m, Capabilities: { Gpio: ['$MT3620_RDB_LED1_RED'] } }),
      ['/Capabilities/Gpio/0'],
    ],
    [
      '400/Uart name with a space',
      (m) => ({ ...m, Capabilities: { Uart: ['UART 1'] } }),
      ['/Capabilities/Uart/0'],
    ],
    [
      '400/I2cMaster name starting with a digit',
      (m) => ({ ...m, Capabilities: { I2cMaster: ['1I2C'] } }),
      ['/Capabilities/I2cMaster/0'],
    ],
    [
      '400/SpiMaster name of 65 characters',
      (m) => ({ ...m, Capabilities: { SpiMaster: [`S${'p'.repeat(64)}`] } }),
      ['/Capabilities/SpiMaster/0'],
    ],
    ['400/Pwm repeated', (m) => ({ ...m, Capabilities: { Pwm: ['PWM0', 'PWM0'] } }), ['/Capabilities/Pwm/1']],
    ['400/Adc not an array', (m) => ({ ...m, Capabilities: { Adc: 'ADC0' } }), ['/Capabilities/Adc']],
    [
      '400/Gpio 65 entries',
      (m) => ({ ...m, Capabilities: { Gpio: Array.from({ length: 65 }, (_, i) => `G${i}`) } }),
      ['/Capabilities/Gpio'],
    ],
    [
      '400/one peripheral under two types',
      (m) => ({ ...m, Capabilities: { Gpio: ['P1'], Pwm: ['P1'] } }),
      ['/Capabilities/Pwm/0'],
    ],
    [
      '400/MutableStorage not an object',
      (m) => ({ ...m, Capabilities: { MutableStorage: 64 } }),
      ['/Capabilities/MutableStorage'],
    ],
    [
      '400/MutableStorage SizeKB missing',
      (m) => ({ ...m, Capabilities: { MutableStorage: {} } }),
      ['/Capabilities/MutableStorage/SizeKB'],
    ],
    [
      '400/MutableStorage SizeKB 0',
      (m) => ({ ...m, Capabilities: { MutableStorage: { SizeKB: 0 } } }),
      ['/Capabilities/MutableStorage/SizeKB'],
    ],
    [
      '400/MutableStorage SizeKB over the default limit',
      (m) => ({ ...m, Capabilities: { MutableStorage: { SizeKB: 65537 } } }),
      ['/Capabilities/MutableStorage/SizeKB'],
    ],
    [
      '400/MutableStorage SizeKB over a configured limit',
      (m) => ({ ...m, Capabilities: { MutableStorage: { SizeKB: 65 } } }),
      ['/Capabilities/MutableStorage/SizeKB'],
      { limits: { maxMutableStorageKB: 64 } },
    ],
    [
      '400/MutableStorage unknown field',
      (m) => ({ ...m, Capabilities: { MutableStorage: { SizeKB: 1, Path: '/data' } } }),
      ['/Capabilities/MutableStorage/Path'],
    ],
    [
      '400/DeviceAuthentication true',
      (m) => ({ ...m, Capabilities: { DeviceAuthentication: true } }),
      ['/Capabilities/DeviceAuthentication'],
    ],
    [
      '400/DeviceAuthentication another tenant',
      (m) => ({ ...m, Capabilities: { DeviceAuthentication: OTHER } }),
      ['/Capabilities/DeviceAuthentication'],
      { tenantId: TENANT },
    ],
    [
      '400/PowerControls unknown control',
      (m) => ({ ...m, Capabilities: { PowerControls: ['SelfDestruct'] } }),
      ['/Capabilities/PowerControls/0'],
    ],
    [
      '400/PowerControls repeated',
      (m) => ({ ...m, Capabilities: { PowerControls: ['ForceReboot', 'ForceReboot'] } }),
      ['/Capabilities/PowerControls/1'],
    ],
    [
      '400/PowerControls too many',
      (m) => ({
        ...m,
        Capabilities: { PowerControls: ['ForceReboot', 'ForceReboot', 'ForceReboot', 'ForceReboot'] },
      }),
      ['/Capabilities/PowerControls'],
    ],
    [
      '400/SystemEventNotifications "true"',
      (m) => ({ ...m, Capabilities: { SystemEventNotifications: 'true' } }),
      ['/Capabilities/SystemEventNotifications'],
    ],
    [
      '400/SoftwareUpdateDeferral without SystemEventNotifications',
      (m) => ({ ...m, Capabilities: { SoftwareUpdateDeferral: true } }),
      ['/Capabilities/SoftwareUpdateDeferral'],
    ],
    [
      '400/NetworkConfig 1',
      (m) => ({ ...m, Capabilities: { NetworkConfig: 1 } }),
      ['/Capabilities/NetworkConfig'],
    ],
    [
      '400/TimeSyncConfig object (Azure Sphere takes a boolean)',
      (m) => ({ ...m, Capabilities: { TimeSyncConfig: {} } }),
      ['/Capabilities/TimeSyncConfig'],
    ],
    [
      '400/name differs from the image package',
      (m) => m,
      ['/Name'],
      { image: { componentId: CID, name: 'other', entryPoint: 'bin/main.js' } },
    ],
    [
      '400/component id differs from the image package',
      (m) => m,
      ['/ComponentId'],
      { image: { componentId: OTHER, name: 'telemetry', entryPoint: 'bin/main.js' } },
    ],
    [
      '400/entry point differs from the image package',
      (m) => m,
      ['/EntryPoint'],
      { image: { componentId: CID, name: 'telemetry', entryPoint: 'bin/other.js' } },
    ],
    ['400/entry point not a package file', (m) => m, ['/EntryPoint'], { files: ['bin/other.js'] }],
  ];
  for (const [name, make, pointers, opts] of cases) {
    test(name, () => {
      const input = make(base());
      // undefined members stand for a missing field
      const json =
        input && typeof input === 'object' && !(input instanceof Date)
          ? JSON.parse(JSON.stringify(input))
          : input;
      refused(name.includes('__proto__') ? input : json, pointers, opts);
    });
  }

  test('every problem is reported at once, each with its JSON pointer', () => {
    const e = refused(
      {
        SchemaVersion: 3,
        Name: '',
        ComponentId: 'x',
        EntryPoint: '/abs',
        CmdArgs: [1],
        Unknown: true,
        Capabilities: { AllowedConnections: ['*'], Gpio: [1], AllowedTcpServerPorts: [0], Nope: 1 },
      },
      [
        '/SchemaVersion',
        '/Name',
        '/ComponentId',
        '/EntryPoint',
        '/CmdArgs/0',
        '/Unknown',
        '/Capabilities/AllowedConnections/0',
        '/Capabilities/Gpio/0',
        '/Capabilities/AllowedTcpServerPorts/0',
        '/Capabilities/Nope',
      ],
    );
    assert.equal(e.status, 400);
    for (const f of e.fields) assert.ok(f.problem.length > 0);
  });

  test('unknown keys are escaped as JSON pointers (RFC 6901)', () => {
    refused({ ...base(), 'a/b~c': 1 }, ['/a~1b~0c']);
  });

  test('a hint names the field a wrongly cased key meant', () => {
    const e = refused({ ...base(), capabilities: {} }, ['/capabilities']);
    assert.match(e.fields[0]?.problem ?? '', /"Capabilities"/);
  });
});

describe('parseAppManifestText', () => {
  const text = JSON.stringify(base());
  test('reads a string and UTF-8 bytes alike', () => {
    assert.deepEqual(parseAppManifestText(text), parseAppManifestText(Buffer.from(text)));
  });

  const bad: [string, string | Uint8Array][] = [
    ['400/not JSON', '{"SchemaVersion":1,'],
    ['400/empty', ''],
    ['400/byte order mark in a string', `\uFEFF${text}`],
    ['400/byte order mark in bytes', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])],
    [
      '400/invalid UTF-8',
      Buffer.concat([Buffer.from(text.slice(0, -2)), Buffer.from([0xff]), Buffer.from('}')]),
    ],
    ['400/over 32 KiB as a string', `${text.slice(0, -1)}${' '.repeat(MAX_APP_MANIFEST_TEXT_BYTES)}}`],
    ['400/over 32 KiB as bytes', Buffer.alloc(MAX_APP_MANIFEST_TEXT_BYTES + 1, 0x20)],
  ];
  for (const [name, input] of bad) {
    test(name, () => {
      assert.throws(
        () => parseAppManifestText(input),
        (e: unknown) =>
          e instanceof HeptadError && e.code === 'APP_MANIFEST_INVALID' && e.fields[0]?.field === '',
      );
    });
  }

  test('a document of exactly 32 KiB is read', () => {
    const padded = `${text.slice(0, -1)}${' '.repeat(MAX_APP_MANIFEST_TEXT_BYTES - text.length)}}`;
    assert.equal(Buffer.byteLength(padded), MAX_APP_MANIFEST_TEXT_BYTES);
    assert.equal(parseAppManifestText(padded).name, 'telemetry');
  });
});
