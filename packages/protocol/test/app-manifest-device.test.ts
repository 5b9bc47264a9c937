// The board definition (docs/formats/app-manifest.md §5) and whether an app fits a device (§7):
// every board refusal is fed its bad input; installing an app whose peripheral, port, component
// id or name collides with an installed app is refused with its code; an update of the same
// component does not collide with itself; apps talk only when both list each other.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  type AppManifest,
  appsMayConnect,
  checkAppAgainstDevice,
  ERROR_REGISTRY,
  type ErrorCode,
  HeptadError,
  MAX_BOARD_TEXT_BYTES,
  parseAppManifest,
  parseBoardDefinition,
  parseBoardDefinitionText,
} from '../src/index.ts';

const BOARD = {
  schemaVersion: 1,
  name: 'rpi4-dev',
  peripherals: {
    LED1: { type: 'gpio', backend: 'gpiochip0:17' },
    LED2: { type: 'gpio', backend: 'sim' },
    BUTTON_A: { type: 'gpio', backend: 'gpiochip1:4' },
    UART1: { type: 'uart', backend: '/dev/ttyS1' },
    UART_USB: { type: 'uart', backend: '/dev/ttyUSB0' },
    I2C1: { type: 'i2c', backend: '/dev/i2c-1' },
    SPI0: { type: 'spi', backend: '/dev/spidev0.1' },
    PWM0: { type: 'pwm', backend: 'pwmchip0:1' },
    ADC0: { type: 'adc', backend: 'iio:device0:3' },
    SIM_ADC: { type: 'adc', backend: 'sim' },
  },
};
const board = parseBoardDefinition(BOARD);

const ids = {
  a: '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b',
  b: 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d',
  c: '0b5c7f3e-8d2a-4c1e-9f60-2a7d4e9b1c35',
};
function app(name: string, componentId: string, capabilities: Record<string, unknown> = {}): AppManifest {
  return parseAppManifest({
    SchemaVersion: 1,
    Name: name,
    ComponentId: componentId,
    EntryPoint: 'main.js',
    Capabilities: capabilities,
  });
}

function refusedBoard(input: unknown, pointers: readonly string[]): void {
  assert.throws(
    () => parseBoardDefinition(input),
    (e: unknown) => {
      assert.ok(e instanceof HeptadError);
      assert.equal(e.code, 'BOARD_DEFINITION_INVALID');
      assert.deepEqual([...e.fields.map((f) => f.field)].sort(), [...pointers].sort());
      return true;
    },
  );
}

describe('parseBoardDefinition', () => {
  test('reads every type and backend form', () => {
    assert.equal(board.name, 'rpi4-dev');
    assert.equal(board.peripherals.size, 10);
    assert.deepEqual(board.peripherals.get('LED1'), {
      name: 'LED1',
      type: 'gpio',
      backend: { kind: 'gpiochip', spec: 'gpiochip0:17', chip: 0, line: 17 },
    });
    assert.deepEqual(board.peripherals.get('LED2')?.backend, { kind: 'sim', spec: 'sim' });
    assert.deepEqual(board.peripherals.get('UART_USB')?.backend, {
      kind: 'tty',
      spec: '/dev/ttyUSB0',
      path: '/dev/ttyUSB0',
    });
    assert.deepEqual(board.peripherals.get('I2C1')?.backend, {
      kind: 'i2c-dev',
      spec: '/dev/i2c-1',
      path: '/dev/i2c-1',
      bus: 1,
    });
    assert.deepEqual(board.peripherals.get('SPI0')?.backend, {
      kind: 'spidev',
      spec: '/dev/spidev0.1',
      path: '/dev/spidev0.1',
      bus: 0,
      chipSelect: 1,
    });
    assert.deepEqual(board.peripherals.get('PWM0')?.backend, {
      kind: 'pwmchip',
      spec: 'pwmchip0:1',
      chip: 0,
      channel: 1,
    });
    assert.deepEqual(board.peripherals.get('ADC0')?.backend, {
      kind: 'iio',
      spec: 'iio:device0:3',
      device: 0,
      channel: 3,
    });
  });

  test('the result cannot be changed', () => {
    assert.ok(Object.isFrozen(board) && Object.isFrozen(board.peripherals.get('LED1')));
    assert.equal((board.peripherals as unknown as { set?: unknown }).set, undefined);
    assert.throws(() => {
      (board as { name: string }).name = 'x';
    }, TypeError);
  });

  test('several simulated peripherals may share the backend "sim"', () => {
    assert.equal(board.peripherals.get('SIM_ADC')?.backend.kind, 'sim');
  });

  const p = (peripherals: Record<string, unknown>) => ({ ...BOARD, peripherals });
  const cases: [string, unknown, string[]][] = [
    ['invalid/not an object', [], ['']],
    ['invalid/null', null, ['']],
    ['invalid/unknown field', { ...BOARD, Peripherals: {} }, ['/Peripherals']],
    ['invalid/schemaVersion missing', { name: 'b', peripherals: {} }, ['/schemaVersion']],
    ['invalid/schemaVersion 2', { ...BOARD, schemaVersion: 2 }, ['/schemaVersion']],
    ['invalid/name missing', { schemaVersion: 1, peripherals: {} }, ['/name']],
    ['invalid/name with a slash', { ...BOARD, name: 'a/b' }, ['/name']],
    ['invalid/peripherals missing', { schemaVersion: 1, name: 'b' }, ['/peripherals']],
    ['invalid/peripherals an array', { ...BOARD, peripherals: [] }, ['/peripherals']],
    [
      'invalid/257 peripherals',
      p(
        Object.fromEntries(
          Array.from({ length: 257 }, (_, i) => [`P${i}`, { type: 'gpio', backend: 'sim' }]),
        ),
      ),
      ['/peripherals'],
    ],
    [
      'invalid/peripheral name with a space',
      p({ 'LED 1': { type: 'gpio', backend: 'sim' } }),
      ['/peripherals/LED 1'],
    ],
    [
      'invalid/peripheral name starting with $',
      p({ $LED: { type: 'gpio', backend: 'sim' } }),
      ['/peripherals/$LED'],
    ],
    [
      'invalid/peripheral names equal ignoring case',
      p({ LED1: { type: 'gpio', backend: 'sim' }, led1: { type: 'gpio', backend: 'sim' } }),
      ['/peripherals/led1'],
    ],
    ['invalid/peripheral not an object', p({ LED1: 'gpiochip0:17' }), ['/peripherals/LED1']],
    [
      'invalid/peripheral unknown field',
      p({ LED1: { type: 'gpio', backend: 'sim', pin: 17 } }),
      ['/peripherals/LED1/pin'],
    ],
    ['invalid/type unknown', p({ CAN0: { type: 'can', backend: 'sim' } }), ['/peripherals/CAN0/type']],
    [
      'invalid/type in another case',
      p({ LED1: { type: 'GPIO', backend: 'sim' } }),
      ['/peripherals/LED1/type'],
    ],
    ['invalid/backend missing', p({ LED1: { type: 'gpio' } }), ['/peripherals/LED1/backend']],
    [
      'invalid/gpio backend of another type',
      p({ LED1: { type: 'gpio', backend: '/dev/ttyS1' } }),
      ['/peripherals/LED1/backend'],
    ],
    [
      'invalid/gpio line with a leading zero',
      p({ LED1: { type: 'gpio', backend: 'gpiochip0:017' } }),
      ['/peripherals/LED1/backend'],
    ],
    [
      'invalid/gpio line too large',
      p({ LED1: { type: 'gpio', backend: 'gpiochip0:10000' } }),
      ['/peripherals/LED1/backend'],
    ],
    [
      'invalid/uart path traversal',
      p({ U: { type: 'uart', backend: '/dev/tty../../etc/shadow' } }),
      ['/peripherals/U/backend'],
    ],
    ['invalid/uart not a tty', p({ U: { type: 'uart', backend: '/dev/sda' } }), ['/peripherals/U/backend']],
    ['invalid/i2c path', p({ I: { type: 'i2c', backend: '/dev/i2c-a' } }), ['/peripherals/I/backend']],
    [
      'invalid/spi without chip select',
      p({ S: { type: 'spi', backend: '/dev/spidev0' } }),
      ['/peripherals/S/backend'],
    ],
    ['invalid/pwm form', p({ P: { type: 'pwm', backend: 'pwmchip0' } }), ['/peripherals/P/backend']],
    [
      'invalid/adc form',
      p({ A: { type: 'adc', backend: '/sys/bus/iio/devices/iio:device0' } }),
      ['/peripherals/A/backend'],
    ],
    ['invalid/backend "SIM"', p({ A: { type: 'adc', backend: 'SIM' } }), ['/peripherals/A/backend']],
    [
      'invalid/two peripherals on one line',
      p({
        LED1: { type: 'gpio', backend: 'gpiochip0:17' },
        RELAY: { type: 'gpio', backend: 'gpiochip0:17' },
      }),
      ['/peripherals/RELAY/backend'],
    ],
  ];
  for (const [name, input, pointers] of cases) test(name, () => refusedBoard(input, pointers));

  test('every problem is reported at once', () => {
    refusedBoard(
      { schemaVersion: 0, name: '', extra: 1, peripherals: { 'x y': {}, OK: { type: 'pwm', backend: 'x' } } },
      [
        '/schemaVersion',
        '/name',
        '/extra',
        '/peripherals/x y',
        '/peripherals/x y/type',
        '/peripherals/OK/backend',
      ],
    );
  });

  test('parseBoardDefinitionText reads text and refuses bad text with the code', () => {
    assert.equal(parseBoardDefinitionText(Buffer.from(JSON.stringify(BOARD))).peripherals.size, 10);
    for (const bad of ['', '{', `\uFEFF${JSON.stringify(BOARD)}`, ' '.repeat(MAX_BOARD_TEXT_BYTES + 1)]) {
      assert.throws(
        () => parseBoardDefinitionText(bad),
        (e: unknown) => e instanceof HeptadError && e.code === 'BOARD_DEFINITION_INVALID',
      );
    }
  });
});

function refusedFit(
  manifest: AppManifest,
  installed: AppManifest[],
  code: ErrorCode,
  pointers: readonly string[],
): HeptadError {
  let caught: unknown;
  try {
    checkAppAgainstDevice(manifest, board, installed);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof HeptadError, 'expected a refusal');
  assert.equal(caught.code, code);
  assert.deepEqual([...caught.fields.map((f) => f.field)].sort(), [...pointers].sort());
  return caught;
}

describe('checkAppAgainstDevice', () => {
  test('an app whose peripherals exist with their types fits an empty device and gets its backends', () => {
    const fit = checkAppAgainstDevice(
      app('blink', ids.a, {
        Gpio: ['LED1', 'BUTTON_A'],
        Uart: ['UART1'],
        I2cMaster: ['I2C1'],
        SpiMaster: ['SPI0'],
        Pwm: ['PWM0'],
        Adc: ['ADC0'],
      }),
      board,
      [],
    );
    assert.deepEqual(
      fit.peripherals.map((p) => `${p.name}:${p.backend.spec}`),
      [
        'LED1:gpiochip0:17',
        'BUTTON_A:gpiochip1:4',
        'UART1:/dev/ttyS1',
        'I2C1:/dev/i2c-1',
        'SPI0:/dev/spidev0.1',
        'PWM0:pwmchip0:1',
        'ADC0:iio:device0:3',
      ],
    );
    assert.equal(fit.replaces, undefined);
    assert.deepEqual(fit.applicationConnections, []);
  });

  test('APP_PERIPHERAL_UNKNOWN/a peripheral the board lacks, with a case hint', () => {
    const e = refusedFit(app('x', ids.a, { Gpio: ['LED1', 'LED9', 'led2'] }), [], 'APP_PERIPHERAL_UNKNOWN', [
      '/Capabilities/Gpio/1',
      '/Capabilities/Gpio/2',
    ]);
    assert.match(e.fields[1]?.problem ?? '', /"LED2"/);
    assert.equal(e.status, 409);
  });

  test('APP_PERIPHERAL_TYPE_MISMATCH/a uart requested as gpio, a gpio as pwm', () => {
    refusedFit(app('x', ids.a, { Gpio: ['UART1'], Pwm: ['LED1'] }), [], 'APP_PERIPHERAL_TYPE_MISMATCH', [
      '/Capabilities/Gpio/0',
      '/Capabilities/Pwm/0',
    ]);
  });

  test('APP_PERIPHERAL_TAKEN/a peripheral another installed app owns', () => {
    const owner = app('blink', ids.b, { Gpio: ['LED1'], Uart: ['UART1'] });
    refusedFit(
      app('x', ids.a, { Gpio: ['LED2', 'LED1'], Uart: ['UART1'] }),
      [owner],
      'APP_PERIPHERAL_TAKEN',
      ['/Capabilities/Gpio/1', '/Capabilities/Uart/0'],
    );
  });

  test('APP_PORT_TAKEN/a TCP or UDP server port another installed app listens on', () => {
    const owner = app('web', ids.b, { AllowedTcpServerPorts: [8080], AllowedUdpServerPorts: [5353] });
    refusedFit(
      app('x', ids.a, { AllowedTcpServerPorts: [8081, 8080], AllowedUdpServerPorts: [5353] }),
      [owner],
      'APP_PORT_TAKEN',
      ['/Capabilities/AllowedTcpServerPorts/1', '/Capabilities/AllowedUdpServerPorts/0'],
    );
  });

  test('the same port number over TCP and over UDP belongs to two apps without conflict', () => {
    const udp = app('dns', ids.b, { AllowedUdpServerPorts: [53] });
    assert.doesNotThrow(() =>
      checkAppAgainstDevice(app('x', ids.a, { AllowedTcpServerPorts: [53] }), board, [udp]),
    );
  });

  test('APP_COMPONENT_CONFLICT/the component id is installed under another name', () => {
    refusedFit(app('renamed', ids.a), [app('original', ids.a)], 'APP_COMPONENT_CONFLICT', ['/ComponentId']);
  });

  test('APP_NAME_TAKEN/another component is installed under the name', () => {
    refusedFit(app('blink', ids.a), [app('blink', ids.b)], 'APP_NAME_TAKEN', ['/Name']);
  });

  test('APP_NAME_TAKEN/another component is installed under the name in another case', () => {
    refusedFit(app('Blink', ids.a), [app('blink', ids.b)], 'APP_NAME_TAKEN', ['/Name']);
  });

  test('an update of the same component keeps its own peripherals and ports, and says what it replaces', () => {
    const old = app('blink', ids.a, { Gpio: ['LED1'], AllowedTcpServerPorts: [8080] });
    const next = app('blink', ids.a, { Gpio: ['LED1', 'LED2'], AllowedTcpServerPorts: [8080] });
    const fit = checkAppAgainstDevice(next, board, [old, app('other', ids.b, { Gpio: ['BUTTON_A'] })]);
    assert.equal(fit.replaces, old);
    assert.deepEqual(
      fit.peripherals.map((p) => p.name),
      ['LED1', 'LED2'],
    );
  });

  test('problems of several kinds: the code is the first kind in order, every problem is listed with its code', () => {
    const owner = app('blink', ids.b, { Gpio: ['LED1'], AllowedTcpServerPorts: [80] });
    const e = refusedFit(
      app('blink', ids.a, { Gpio: ['LED1', 'NOPE'], Uart: ['LED2'], AllowedTcpServerPorts: [80] }),
      [owner],
      'APP_NAME_TAKEN',
      [
        '/Name',
        '/Capabilities/Gpio/0',
        '/Capabilities/Gpio/1',
        '/Capabilities/Uart/0',
        '/Capabilities/AllowedTcpServerPorts/0',
      ],
    );
    const problems = e.detail['problems'] as { code: string; field: string }[];
    assert.deepEqual(
      problems.map((p) => `${p.code} ${p.field}`).sort(),
      [
        'APP_NAME_TAKEN /Name',
        'APP_PERIPHERAL_TAKEN /Capabilities/Gpio/0',
        'APP_PERIPHERAL_UNKNOWN /Capabilities/Gpio/1',
        'APP_PERIPHERAL_TYPE_MISMATCH /Capabilities/Uart/0',
        'APP_PORT_TAKEN /Capabilities/AllowedTcpServerPorts/0',
      ].sort(),
    );
  });
});

describe('application connections', () => {
  const a = app('a', ids.a, { AllowedApplicationConnections: [ids.b, ids.c] });
  const b = app('b', ids.b, { AllowedApplicationConnections: [ids.a] });
  const c = app('c', ids.c);

  test('two apps that list each other may talk, both ways', () => {
    assert.equal(appsMayConnect(a, b), true);
    assert.equal(appsMayConnect(b, a), true);
  });

  test('a one-sided listing grants nothing, either way', () => {
    assert.equal(appsMayConnect(a, c), false);
    assert.equal(appsMayConnect(c, a), false);
  });

  test('an app never connects to itself this way', () => {
    assert.equal(appsMayConnect(a, a), false);
  });

  test('the device check lists the installed apps the new one may talk to', () => {
    assert.deepEqual(checkAppAgainstDevice(a, board, [b, c]).applicationConnections, [ids.b]);
    assert.deepEqual(checkAppAgainstDevice(c, board, [a, b]).applicationConnections, []);
  });
});

describe('docs/formats/app-manifest.md', () => {
  const doc = readFileSync(new URL('../../../docs/formats/app-manifest.md', import.meta.url), 'utf8');
  const blocks = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1] ?? ''));

  test('its example manifest (§1) parses and fits its example board (§5)', () => {
    assert.equal(blocks.length, 2);
    const manifest = parseAppManifest(blocks[0]);
    const docBoard = parseBoardDefinition(blocks[1]);
    const fit = checkAppAgainstDevice(manifest, docBoard, []);
    assert.deepEqual(
      fit.peripherals.map((p) => p.name),
      ['LED1', 'BUTTON_A', 'UART1', 'I2C1'],
    );
  });

  test('every error code of the app-manifest area is named in it', () => {
    const codes = Object.keys(ERROR_REGISTRY).filter((c) => c.startsWith('APP_') || c.startsWith('BOARD_'));
    assert.ok(codes.length >= 8);
    for (const code of codes) assert.ok(doc.includes(`\`${code}\``), code);
  });
});
