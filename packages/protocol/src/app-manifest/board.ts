/**
 * The board definition (`board.json`, docs/formats/app-manifest.md §5): the device's own list of
 * peripherals an app may request, each with a type and a backend. It belongs to the device, not
 * to any app: apps name peripherals, the board says what those names are.
 */
import {
  BOARD_SCHEMA_VERSION,
  type BoardDefinition,
  type BoardPeripheral,
  MAX_BOARD_NAME_LENGTH,
  MAX_BOARD_PERIPHERALS,
  MAX_BOARD_TEXT_BYTES,
  MAX_PERIPHERAL_NAME_LENGTH,
  PERIPHERAL_TYPES,
  type PeripheralBackend,
  type PeripheralType,
} from './format.ts';
import { isJsonObject, own, Problems, parseJsonText, pointer, refuseUnknownKeys } from './json.ts';
import { deepFreeze, PERIPHERAL_NAME } from './manifest.ts';

const BOARD_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A decimal number without sign or leading zeros, at most 4 digits (0..9999). */
const N = '(0|[1-9]\\d{0,3})';

const BACKENDS: Readonly<Record<PeripheralType, { re: RegExp; form: string }>> = {
  gpio: { re: new RegExp(`^gpiochip${N}:${N}$`), form: 'gpiochipN:LINE (e.g. gpiochip0:17)' },
  uart: { re: /^\/dev\/tty[A-Za-z][A-Za-z0-9]{0,31}$/, form: '/dev/ttyNAME (e.g. /dev/ttyS1, /dev/ttyUSB0)' },
  i2c: { re: new RegExp(`^/dev/i2c-${N}$`), form: '/dev/i2c-N' },
  spi: { re: new RegExp(`^/dev/spidev${N}\\.${N}$`), form: '/dev/spidevBUS.CS (e.g. /dev/spidev0.0)' },
  pwm: { re: new RegExp(`^pwmchip${N}:${N}$`), form: 'pwmchipN:CHANNEL (e.g. pwmchip0:1)' },
  adc: { re: new RegExp(`^iio:device${N}:${N}$`), form: 'iio:deviceN:CHANNEL (e.g. iio:device0:3)' },
};

function toBackend(type: PeripheralType, spec: string): PeripheralBackend {
  if (spec === 'sim') return { kind: 'sim', spec };
  // The numbers are the form's capture groups: "/dev/i2c-1" holds a 2 that is not the bus.
  const groups = BACKENDS[type].re.exec(spec) ?? [];
  const a = Number(groups[1] ?? 0);
  const b = Number(groups[2] ?? 0);
  switch (type) {
    case 'gpio':
      return { kind: 'gpiochip', spec, chip: a, line: b };
    case 'uart':
      return { kind: 'tty', spec, path: spec };
    case 'i2c':
      return { kind: 'i2c-dev', spec, path: spec, bus: a };
    case 'spi':
      return { kind: 'spidev', spec, path: spec, bus: a, chipSelect: b };
    case 'pwm':
      return { kind: 'pwmchip', spec, chip: a, channel: b };
    case 'adc':
      return { kind: 'iio', spec, device: a, channel: b };
  }
}

/**
 * Checks a board definition (§5) and returns it frozen, or throws BOARD_DEFINITION_INVALID
 * listing every problem. Two peripherals may not share a name ignoring case (an app asking for
 * "led1" must not silently get "LED1"), nor a Linux backend (two names for one line would let two
 * apps own one pin).
 */
export function parseBoardDefinition(json: unknown): BoardDefinition {
  const p = new Problems();
  if (!isJsonObject(json)) {
    p.add('', 'must be a JSON object');
    p.throwIfAny('BOARD_DEFINITION_INVALID', 'the board definition is not valid');
  }
  const b = json as Record<string, unknown>;
  refuseUnknownKeys(b, ['schemaVersion', 'name', 'peripherals'], '', p, 'a board definition field');
  const schema = own(b, 'schemaVersion');
  if (schema === undefined) p.add('/schemaVersion', 'is required');
  else if (schema !== BOARD_SCHEMA_VERSION) p.add('/schemaVersion', 'must be 1');
  const name = own(b, 'name');
  if (typeof name !== 'string' || !BOARD_NAME.test(name)) {
    p.add('/name', `must be 1-${MAX_BOARD_NAME_LENGTH} of [A-Za-z0-9._-], starting with a letter or digit`);
  }
  const peripherals = new Map<string, BoardPeripheral>();
  const list = own(b, 'peripherals');
  if (!isJsonObject(list)) p.add('/peripherals', 'must be an object of peripheral name → { type, backend }');
  else {
    const names = Object.keys(list);
    if (names.length > MAX_BOARD_PERIPHERALS) {
      p.add('/peripherals', `has ${names.length} peripherals; at most ${MAX_BOARD_PERIPHERALS}`);
    } else {
      const folded = new Map<string, string>();
      const backends = new Map<string, string>();
      for (const n of names) {
        const at = pointer('/peripherals', n);
        let ok = true;
        if (!PERIPHERAL_NAME.test(n)) {
          p.add(
            at,
            `is not a peripheral name: a letter, then up to ${MAX_PERIPHERAL_NAME_LENGTH - 1} of [A-Za-z0-9_-]`,
          );
          ok = false;
        } else {
          const same = folded.get(n.toLowerCase());
          if (same !== undefined) {
            p.add(at, `differs from ${same} only by case`);
            ok = false;
          }
          folded.set(n.toLowerCase(), n);
        }
        const entry = own(list, n);
        if (!isJsonObject(entry)) {
          p.add(at, 'must be an object { "type", "backend" }');
          continue;
        }
        refuseUnknownKeys(entry, ['type', 'backend'], at, p, 'a peripheral field');
        const type = own(entry, 'type');
        const backend = own(entry, 'backend');
        if (!PERIPHERAL_TYPES.includes(type as PeripheralType)) {
          p.add(pointer(at, 'type'), `must be one of ${PERIPHERAL_TYPES.join(', ')}`);
          continue;
        }
        const t = type as PeripheralType;
        if (typeof backend !== 'string' || (backend !== 'sim' && !BACKENDS[t].re.test(backend))) {
          p.add(pointer(at, 'backend'), `must be "sim" or ${BACKENDS[t].form}`);
          continue;
        }
        if (backend !== 'sim') {
          const other = backends.get(backend);
          if (other !== undefined) {
            p.add(pointer(at, 'backend'), `is also the backend of ${other}`);
            continue;
          }
          backends.set(backend, n);
        }
        if (ok) peripherals.set(n, deepFreeze({ name: n, type: t, backend: toBackend(t, backend) }));
      }
    }
  }
  p.throwIfAny('BOARD_DEFINITION_INVALID', 'the board definition is not valid');
  return deepFreeze({
    schemaVersion: 1,
    name: name as string,
    peripherals: new ReadonlyMapView(peripherals),
  });
}

/** `board.json` as text or UTF-8 bytes (§6: at most 64 KiB, no byte order mark). */
export function parseBoardDefinitionText(text: string | Uint8Array): BoardDefinition {
  return parseBoardDefinition(
    parseJsonText(text, MAX_BOARD_TEXT_BYTES, 'BOARD_DEFINITION_INVALID', 'board definition'),
  );
}

/** A Map that cannot be changed after the board is parsed (Object.freeze does not stop Map.set). */
class ReadonlyMapView<K, V> implements ReadonlyMap<K, V> {
  readonly #map: Map<K, V>;
  constructor(map: Map<K, V>) {
    this.#map = map;
  }
  get size(): number {
    return this.#map.size;
  }
  get(key: K): V | undefined {
    return this.#map.get(key);
  }
  has(key: K): boolean {
    return this.#map.has(key);
  }
  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void): void {
    this.#map.forEach((v, k) => {
      fn(v, k, this);
    });
  }
  entries(): MapIterator<[K, V]> {
    return this.#map.entries();
  }
  keys(): MapIterator<K> {
    return this.#map.keys();
  }
  values(): MapIterator<V> {
    return this.#map.values();
  }
  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.#map[Symbol.iterator]();
  }
}
