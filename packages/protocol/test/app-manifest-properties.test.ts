// Property runs over the app manifest, the board definition and host matching: random junk never
// makes a parser throw anything but its coded error; random valid manifests parse and survive a
// JSON round trip unchanged; every parsed host rule has one spelling that parses back to itself;
// non-ASCII hosts are never normalized into something that could be allowed.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  connectionAllowed,
  formatHostRule,
  HeptadError,
  hostRulesAllow,
  normalizeHost,
  parseAppManifest,
  parseAppManifestText,
  parseBoardDefinition,
  parseHostRule,
} from '../src/index.ts';

const RUNS = { numRuns: 500 };

function onlyCoded(code: string, fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof HeptadError, `threw ${String(e)}`);
    assert.equal(e.code, code);
    assert.ok(e.fields.length > 0);
    for (const f of e.fields) assert.ok(f.field === '' || f.field.startsWith('/'), f.field);
  }
}

const hex = (n: number) =>
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const uuid = fc
  .tuple(hex(8), hex(4), hex(4), hex(4), hex(12))
  .map((p) => p.join('-'))
  .filter((u) => u !== '00000000-0000-0000-0000-000000000000');
const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/);
const domain = fc
  .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.stringMatching(/^[a-z]{3,6}$/))
  .map(([ls, tld]) => [...ls, tld].join('.'));
const port = fc.integer({ min: 1, max: 65535 });
const ipv4 = fc
  .tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 255 }))
  .map((o) => o.join('.'));
const connection = fc.oneof(
  domain,
  fc.tuple(domain, port).map(([d, p]) => `${d}:${p}`),
  fc.tuple(domain, port).map(([d, p]) => `*.${d}:${p}`),
  ipv4,
  fc.ipV6().filter((a) => !/^[0:]*$/.test(a) && !a.startsWith('::ffff:')),
);
const peripheralName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,20}$/);
const uniq = <T>(arb: fc.Arbitrary<T>, max: number, by: (t: T) => unknown = (t) => t) =>
  fc.uniqueArray(arb, { maxLength: max, selector: by });

const validManifest = fc
  .record({
    SchemaVersion: fc.constant(1),
    Name: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
    ComponentId: uuid,
    EntryPoint: fc.stringMatching(/^[a-z]{1,8}(\/[a-z]{1,8}){0,2}\.js$/),
    CmdArgs: fc.array(fc.stringMatching(/^[ -~]{0,40}$/), { maxLength: 5 }),
    Capabilities: fc.record(
      {
        AllowedConnections: uniq(connection, 8, (c) => {
          const r = parseHostRule(c);
          return typeof r === 'string' ? c : formatHostRule(r);
        }),
        AllowedTcpServerPorts: uniq(port, 5),
        AllowedUdpServerPorts: uniq(port, 5),
        AllowedApplicationConnections: uniq(uuid, 3),
        Gpio: uniq(
          peripheralName.map((n) => `G${n}`),
          4,
        ),
        Uart: uniq(
          peripheralName.map((n) => `U${n}`),
          2,
        ),
        MutableStorage: fc.record({ SizeKB: fc.integer({ min: 1, max: 65536 }) }),
        DeviceAuthentication: uuid,
        PowerControls: fc.subarray(['ForcePowerDown', 'ForceReboot', 'SetPowerProfile']),
        SystemEventNotifications: fc.constant(true),
        SoftwareUpdateDeferral: fc.boolean(),
        NetworkConfig: fc.boolean(),
        TimeSyncConfig: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
  })
  // A manifest never lists its own component id among its connections, and defers only with events.
  .filter((m) => !m.Capabilities.AllowedApplicationConnections?.includes(m.ComponentId))
  .map((m) =>
    m.Capabilities.SoftwareUpdateDeferral
      ? { ...m, Capabilities: { ...m.Capabilities, SystemEventNotifications: true } }
      : m,
  );

describe('app manifest properties', () => {
  test('random JSON values are refused only with APP_MANIFEST_INVALID', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), (v) =>
        onlyCoded('APP_MANIFEST_INVALID', () => parseAppManifest(v)),
      ),
      RUNS,
    );
  });

  test('random values of any kind (symbols, functions, dates, sparse arrays) never throw anything else', () => {
    fc.assert(
      fc.property(
        fc.anything({
          withDate: true,
          withMap: true,
          withSet: true,
          withSparseArray: true,
          withNullPrototype: true,
        }),
        (v) => onlyCoded('APP_MANIFEST_INVALID', () => parseAppManifest(v)),
      ),
      RUNS,
    );
  });

  test('random objects with the right keys and junk values never throw anything else', () => {
    const junk = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.string(),
      fc.array(fc.string()),
      fc.array(fc.integer()),
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            SchemaVersion: junk,
            Name: junk,
            ComponentId: junk,
            EntryPoint: junk,
            CmdArgs: junk,
            Capabilities: fc.dictionary(
              fc.constantFrom(
                'AllowedConnections',
                'Gpio',
                'MutableStorage',
                'AllowedTcpServerPorts',
                'PowerControls',
                'Adc',
              ),
              junk,
            ),
          },
          { requiredKeys: [] },
        ),
        (v) => onlyCoded('APP_MANIFEST_INVALID', () => parseAppManifest(v)),
      ),
      RUNS,
    );
  });

  test('random text is refused only with APP_MANIFEST_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 200 })), (t) =>
        onlyCoded('APP_MANIFEST_INVALID', () => parseAppManifestText(t)),
      ),
      RUNS,
    );
  });

  test('random valid manifests parse, and a JSON round trip of the input parses to the same result', () => {
    fc.assert(
      fc.property(validManifest, (m) => {
        const parsed = parseAppManifest(m);
        assert.equal(parsed.componentId, m.ComponentId);
        assert.deepEqual(parseAppManifestText(JSON.stringify(m)), parsed);
        assert.equal(
          parsed.capabilities.allowedConnections.length,
          m.Capabilities.AllowedConnections?.length ?? 0,
        );
      }),
      RUNS,
    );
  });

  test('a valid manifest with one value replaced by junk is parsed or refused, never anything else', () => {
    const keys = ['SchemaVersion', 'Name', 'ComponentId', 'EntryPoint', 'CmdArgs', 'Capabilities'];
    fc.assert(
      fc.property(validManifest, fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 3 }), (m, k, junk) => {
        onlyCoded('APP_MANIFEST_INVALID', () => parseAppManifest({ ...m, [k]: junk }));
      }),
      RUNS,
    );
  });
});

describe('board definition properties', () => {
  test('random values are refused only with BOARD_DEFINITION_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 4 }), fc.anything({ withNullPrototype: true })), (v) =>
        onlyCoded('BOARD_DEFINITION_INVALID', () => parseBoardDefinition(v)),
      ),
      RUNS,
    );
  });

  test('random peripheral tables are parsed or refused, never anything else', () => {
    const entry = fc.record(
      {
        type: fc.oneof(fc.constantFrom('gpio', 'uart', 'i2c', 'spi', 'pwm', 'adc'), fc.string()),
        backend: fc.oneof(
          fc.constant('sim'),
          fc.nat(20).map((n) => `gpiochip0:${n}`),
          fc.nat(3).map((n) => `/dev/ttyS${n}`),
          fc.string(),
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), entry, { maxKeys: 10 }), (peripherals) =>
        onlyCoded('BOARD_DEFINITION_INVALID', () =>
          parseBoardDefinition({ schemaVersion: 1, name: 'b', peripherals }),
        ),
      ),
      RUNS,
    );
  });
});

describe('host properties', () => {
  test('parseHostRule never throws; a rule has one spelling that parses back to the same rule', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), connection, fc.webUrl(), fc.domain(), fc.ipV4Extended(), fc.ipV6()),
        (s) => {
          const r = parseHostRule(s);
          if (typeof r === 'string') return;
          const spelled = formatHostRule(r);
          assert.deepEqual(parseHostRule(spelled), r);
          assert.equal(formatHostRule(parseHostRule(spelled) as never), spelled);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('a name rule allows its host in any case and with a trailing dot, on its port only', () => {
    fc.assert(
      fc.property(domain, port, port, (d, p, q) => {
        const rules = [parseHostRule(`${d}:${p}`)].filter((r) => typeof r !== 'string');
        assert.equal(rules.length, 1);
        assert.equal(hostRulesAllow(rules as never, `${d.toUpperCase()}.`, p), true);
        assert.equal(hostRulesAllow(rules as never, d, q), p === q);
        assert.equal(hostRulesAllow(rules as never, `x.${d}`, p), false);
      }),
      RUNS,
    );
  });

  test('a wildcard allows one or more labels in front of its domain, never the domain itself or a look-alike', () => {
    fc.assert(
      fc.property(
        domain,
        fc.array(label, { minLength: 1, maxLength: 3 }),
        label,
        port,
        (d, front, glued, p) => {
          const r = parseHostRule(`*.${d}`);
          if (typeof r === 'string') return; // a public suffix such as *.co.uk
          assert.equal(hostRulesAllow([r], `${front.join('.')}.${d}`, p), true);
          assert.equal(hostRulesAllow([r], d, p), false);
          assert.equal(hostRulesAllow([r], `${glued}${d}`, p), false);
        },
      ),
      RUNS,
    );
  });

  test('no host with a non-ASCII character is normalized, so none is ever allowed', () => {
    const nonAscii = fc
      .tuple(fc.string(), fc.string({ unit: 'binary', minLength: 1 }), fc.string())
      .map(([a, b, c]) => `${a}${b}${c}`)
      .filter((s) => /[^\x20-\x7e]/.test(s));
    const m = parseAppManifest({
      SchemaVersion: 1,
      Name: 'n',
      ComponentId: '3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b',
      EntryPoint: 'a.js',
      Capabilities: { AllowedConnections: ['*.example.com', 'example.com', '::1', '127.0.0.1'] },
    });
    fc.assert(
      fc.property(nonAscii, port, (h, p) => {
        assert.equal(normalizeHost(h), undefined);
        assert.equal(connectionAllowed(m, h, p), false);
      }),
      { numRuns: 2000 },
    );
  });
});
