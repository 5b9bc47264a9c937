/**
 * Peripheral backends behind one interface (docs/apps.md §Peripherals). The supervisor calls them
 * only for peripherals the board defines and the app's manifest grants (checked before).
 *
 * - `sim`: in memory; what apps drive is written to `peripherals/sim.json` (for tests and
 *   `heptad device peripherals`), what they read can be set in `peripherals/sim-inputs.json`.
 * - Linux, where a file interface is natural: GPIO through sysfs (`/sys/class/gpio`, the chip's
 *   base + line), UART through the tty device, PWM through `/sys/class/pwm`, ADC through IIO
 *   `in_voltageN_raw`. I2C and SPI need ioctls, which Node cannot make without a native addon
 *   (the runtime has none): they answer APP_PERIPHERAL_FAILED on a Linux backend.
 */
import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type BoardPeripheral, HeptadError } from '@heptad/protocol';

export const SIM_STATE_PATH = 'peripherals/sim.json';
export const SIM_INPUTS_PATH = 'peripherals/sim-inputs.json';
const UART_KEEP = 4096;
const MAX_READ = 64 * 1024;

export interface PwmSetting {
  readonly periodNs: number;
  readonly dutyNs: number;
  readonly enabled: boolean;
}

export interface SimState {
  board: string;
  gpio: Record<string, { value: 0 | 1; writes: number; owner: string }>;
  uart: Record<string, { txBytes: number; tx: string; owner: string }>;
  i2c: Record<string, { transfers: number; owner: string }>;
  spi: Record<string, { transfers: number; owner: string }>;
  pwm: Record<string, PwmSetting & { owner: string }>;
  adc: Record<string, { reads: number; owner: string }>;
}

const fail = (p: BoardPeripheral, why: string, cause?: unknown) =>
  new HeptadError(
    'APP_PERIPHERAL_FAILED',
    `${p.name} (${p.backend.spec}): ${why}`,
    cause === undefined ? {} : { cause },
  );

export class Peripherals {
  readonly #dir: string;
  readonly #sim: SimState;
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #i2cMem = new Map<string, { ptr: number; mem: Buffer }>();
  readonly #uartRx = new Map<string, Buffer>();
  readonly #ttys = new Map<string, number>();

  constructor(stateDir: string, boardName: string) {
    this.#dir = stateDir;
    this.#sim = { board: boardName, gpio: {}, uart: {}, i2c: {}, spi: {}, pwm: {}, adc: {} };
  }

  #inputs(): { gpio?: Record<string, number>; adc?: Record<string, number>; uart?: Record<string, string> } {
    try {
      return JSON.parse(readFileSync(join(this.#dir, SIM_INPUTS_PATH), 'utf8'));
    } catch {
      return {};
    }
  }

  /** Writes sim.json at most every 50 ms (visibility, not durable state: no fsync). */
  #changed(): void {
    this.#dirty = true;
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, 50);
    this.#timer.unref();
  }

  flush(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    try {
      const path = join(this.#dir, SIM_STATE_PATH);
      mkdirSync(join(this.#dir, 'peripherals'), { recursive: true, mode: 0o700 });
      writeFileSync(`${path}.tmp`, `${JSON.stringify({ ...this.#sim, at: new Date().toISOString() })}\n`, {
        mode: 0o644,
      });
      renameSync(`${path}.tmp`, path);
    } catch {
      // informative only
    }
  }

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.flush();
    for (const fd of this.#ttys.values()) closeSync(fd);
    this.#ttys.clear();
  }

  gpioWrite(p: BoardPeripheral, value: 0 | 1, owner: string): void {
    if (p.backend.kind === 'gpiochip') {
      writeSysfs(p, sysfsGpio(p, 'out'), String(value));
      return;
    }
    const g = this.#sim.gpio[p.name] ?? { value: 0, writes: 0, owner };
    this.#sim.gpio[p.name] = { value, writes: g.writes + 1, owner };
    this.#changed();
  }

  gpioRead(p: BoardPeripheral): 0 | 1 {
    if (p.backend.kind === 'gpiochip') return readSysfs(p, sysfsGpio(p)).trim() === '1' ? 1 : 0;
    const input = this.#inputs().gpio?.[p.name];
    if (input !== undefined) return input ? 1 : 0;
    return this.#sim.gpio[p.name]?.value ?? 0;
  }

  uartWrite(p: BoardPeripheral, data: Buffer, owner: string): void {
    if (p.backend.kind === 'tty') {
      try {
        writeSync(this.#tty(p), data);
      } catch (e) {
        throw fail(p, 'write failed', e);
      }
      return;
    }
    const u = this.#sim.uart[p.name] ?? { txBytes: 0, tx: '', owner };
    const tx = Buffer.concat([Buffer.from(u.tx, 'base64'), data]).subarray(-UART_KEEP);
    this.#sim.uart[p.name] = { txBytes: u.txBytes + data.length, tx: tx.toString('base64'), owner };
    // The simulated UART is wired in loopback: what is sent can be read back.
    this.#uartRx.set(
      p.name,
      Buffer.concat([this.#uartRx.get(p.name) ?? Buffer.alloc(0), data]).subarray(-MAX_READ),
    );
    this.#changed();
  }

  uartRead(p: BoardPeripheral): Buffer {
    if (p.backend.kind === 'tty') {
      const buf = Buffer.alloc(MAX_READ);
      try {
        return buf.subarray(0, readSync(this.#tty(p), buf));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return Buffer.alloc(0);
        throw fail(p, 'read failed', e);
      }
    }
    const injected = this.#inputs().uart?.[p.name];
    const rx = Buffer.concat([
      this.#uartRx.get(p.name) ?? Buffer.alloc(0),
      injected ? Buffer.from(injected, 'base64') : Buffer.alloc(0),
    ]);
    this.#uartRx.delete(p.name);
    return rx.subarray(0, MAX_READ);
  }

  #tty(p: BoardPeripheral): number {
    const path = p.backend.kind === 'tty' ? p.backend.path : '';
    let fd = this.#ttys.get(path);
    if (fd === undefined) {
      try {
        fd = openSync(path, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
      } catch (e) {
        throw fail(p, 'cannot open the tty', e);
      }
      this.#ttys.set(path, fd);
    }
    return fd;
  }

  /**
   * Simulated I2C: every 7-bit address is a 256-byte register file. The first byte written sets
   * the register pointer, the rest are written from there; reads continue from the pointer.
   */
  i2cTransfer(p: BoardPeripheral, address: number, data: Buffer, readLength: number, owner: string): Buffer {
    if (p.backend.kind !== 'sim') throw fail(p, 'I2C needs an ioctl; no Linux backend in this runtime');
    const key = `${p.name}/${address}`;
    const dev = this.#i2cMem.get(key) ?? { ptr: 0, mem: Buffer.alloc(256) };
    this.#i2cMem.set(key, dev);
    if (data.length > 0) {
      dev.ptr = data[0] ?? 0;
      for (const b of data.subarray(1)) {
        dev.mem[dev.ptr] = b;
        dev.ptr = (dev.ptr + 1) & 0xff;
      }
    }
    const out = Buffer.alloc(readLength);
    for (let i = 0; i < readLength; i++) {
      out[i] = dev.mem[dev.ptr] ?? 0;
      dev.ptr = (dev.ptr + 1) & 0xff;
    }
    const s = this.#sim.i2c[p.name] ?? { transfers: 0, owner };
    this.#sim.i2c[p.name] = { transfers: s.transfers + 1, owner };
    this.#changed();
    return out;
  }

  /** Simulated SPI: MISO wired to MOSI (loopback). */
  spiTransfer(p: BoardPeripheral, data: Buffer, owner: string): Buffer {
    if (p.backend.kind !== 'sim') throw fail(p, 'SPI needs an ioctl; no Linux backend in this runtime');
    const s = this.#sim.spi[p.name] ?? { transfers: 0, owner };
    this.#sim.spi[p.name] = { transfers: s.transfers + 1, owner };
    this.#changed();
    return Buffer.from(data);
  }

  pwmSet(p: BoardPeripheral, st: PwmSetting, owner: string): void {
    if (p.backend.kind === 'pwmchip') {
      const chip = `/sys/class/pwm/pwmchip${p.backend.chip}`;
      const ch = join(chip, `pwm${p.backend.channel}`);
      if (!existsSync(ch)) writeSysfs(p, join(chip, 'export'), String(p.backend.channel));
      writeSysfs(p, join(ch, 'period'), String(st.periodNs));
      writeSysfs(p, join(ch, 'duty_cycle'), String(st.dutyNs));
      writeSysfs(p, join(ch, 'enable'), st.enabled ? '1' : '0');
      return;
    }
    this.#sim.pwm[p.name] = { ...st, owner };
    this.#changed();
  }

  adcRead(p: BoardPeripheral, owner: string): number {
    if (p.backend.kind === 'iio') {
      const v = Number(
        readSysfs(
          p,
          `/sys/bus/iio/devices/iio:device${p.backend.device}/in_voltage${p.backend.channel}_raw`,
        ).trim(),
      );
      if (!Number.isFinite(v)) throw fail(p, 'not a number');
      return v;
    }
    const a = this.#sim.adc[p.name] ?? { reads: 0, owner };
    this.#sim.adc[p.name] = { reads: a.reads + 1, owner };
    this.#changed();
    return this.#inputs().adc?.[p.name] ?? 2048;
  }
}

function readSysfs(p: BoardPeripheral, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw fail(p, `cannot read ${path}`, e);
  }
}

function writeSysfs(p: BoardPeripheral, path: string, value: string): void {
  try {
    writeFileSync(path, value);
  } catch (e) {
    throw fail(p, `cannot write ${path}`, e);
  }
}

/** The sysfs value file of a gpiochipN:LINE backend (exported on first use), its direction set. */
function sysfsGpio(p: BoardPeripheral, direction?: 'out'): string {
  if (p.backend.kind !== 'gpiochip') throw fail(p, 'not a gpiochip backend');
  const devices = `/sys/bus/gpio/devices/gpiochip${p.backend.chip}/gpio`;
  let base: number | undefined;
  try {
    const chip = readdirSync(devices).find((n) => n.startsWith('gpiochip'));
    if (chip !== undefined) base = Number(readFileSync(join(devices, chip, 'base'), 'utf8').trim());
  } catch {
    base = undefined;
  }
  if (base === undefined || !Number.isInteger(base)) throw fail(p, 'no sysfs GPIO interface for this chip');
  const n = base + p.backend.line;
  const dir = `/sys/class/gpio/gpio${n}`;
  if (!existsSync(dir)) writeSysfs(p, '/sys/class/gpio/export', String(n));
  if (direction !== undefined) writeSysfs(p, join(dir, 'direction'), direction);
  return join(dir, 'value');
}
