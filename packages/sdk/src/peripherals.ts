/**
 * Peripherals, by the names of the device's board definition and granted by the manifest
 * (`Gpio`, `Uart`, `I2cMaster`, `SpiMaster`, `Pwm`, `Adc`). The supervisor owns the hardware
 * (or its simulation); the app only ever names a peripheral.
 */
import { call, fromBase64, toBase64 } from './channel.ts';

export type PinValue = 0 | 1;

export const gpio = {
  /** Drives an output line: 1 high, 0 low. */
  async write(name: string, value: PinValue | boolean): Promise<void> {
    await call('gpio.write', { name, value: value === true || value === 1 ? 1 : 0 });
  },
  /** Reads a line. */
  async read(name: string): Promise<PinValue> {
    return (await call<number>('gpio.read', { name })) === 1 ? 1 : 0;
  },
};

export const uart = {
  async write(name: string, data: Uint8Array | string): Promise<void> {
    await call('uart.write', { name, data: toBase64(data) });
  },
  /** The bytes received since the last read (at most 64 KiB). */
  async read(name: string): Promise<Uint8Array> {
    return fromBase64(await call('uart.read', { name }));
  },
};

export const i2c = {
  /** Writes `write` to the device at `address` (7-bit), then reads `readLength` bytes. */
  async transfer(
    name: string,
    address: number,
    write: Uint8Array = new Uint8Array(),
    readLength = 0,
  ): Promise<Uint8Array> {
    return fromBase64(await call('i2c.transfer', { name, address, data: toBase64(write), readLength }));
  },
};

export const spi = {
  /** Full-duplex transfer: returns as many bytes as were sent. */
  async transfer(name: string, data: Uint8Array): Promise<Uint8Array> {
    return fromBase64(await call('spi.transfer', { name, data: toBase64(data) }));
  },
};

export interface PwmState {
  readonly periodNs: number;
  readonly dutyNs: number;
  readonly enabled: boolean;
}

export const pwm = {
  async set(name: string, state: PwmState): Promise<void> {
    await call('pwm.set', { name, ...state });
  },
};

export const adc = {
  /** The raw sample of the channel. */
  async read(name: string): Promise<number> {
    return Number(await call('adc.read', { name }));
  },
};
