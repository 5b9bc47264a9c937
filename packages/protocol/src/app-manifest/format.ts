/**
 * Types and limits of the app manifest (`app_manifest.json`) and of the board definition
 * (`board.json`), version 1. Every field, rule, limit and refusal is specified in
 * docs/formats/app-manifest.md; section numbers (§) below refer to it.
 */
import type { HostRule } from './host.ts';

/** §2: the only schema version of either file. */
export const APP_MANIFEST_SCHEMA_VERSION = 1;
export const BOARD_SCHEMA_VERSION = 1;

/** §6: fixed limits (part of the format). */
export const MAX_APP_NAME_LENGTH = 64;
export const MAX_CMD_ARGS = 32;
export const MAX_CMD_ARG_BYTES = 1024;
export const MAX_CMD_ARGS_TOTAL_BYTES = 8192;
export const MAX_ALLOWED_CONNECTIONS = 100;
export const MAX_SERVER_PORTS = 32;
export const MAX_APPLICATION_CONNECTIONS = 32;
export const MAX_PERIPHERALS_PER_CAPABILITY = 64;
export const MAX_PERIPHERAL_NAME_LENGTH = 64;
export const MAX_BOARD_PERIPHERALS = 256;
export const MAX_BOARD_NAME_LENGTH = 64;
/** §6: the JSON text of either file (the image package bounds the app manifest at 32 KiB too). */
export const MAX_APP_MANIFEST_TEXT_BYTES = 32 * 1024;
export const MAX_BOARD_TEXT_BYTES = 64 * 1024;

/** §6: configurable limits, with safe defaults. */
export const DEFAULT_MAX_MUTABLE_STORAGE_KB = 64 * 1024;

export interface AppManifestLimits {
  /** Largest `MutableStorage.SizeKB` accepted. */
  readonly maxMutableStorageKB: number;
}

export const DEFAULT_APP_MANIFEST_LIMITS: AppManifestLimits = Object.freeze({
  maxMutableStorageKB: DEFAULT_MAX_MUTABLE_STORAGE_KB,
});

/** §5: the peripheral types a board defines, and the manifest capability that requests each. */
export type PeripheralType = 'gpio' | 'uart' | 'i2c' | 'spi' | 'pwm' | 'adc';
export const PERIPHERAL_TYPES: readonly PeripheralType[] = ['gpio', 'uart', 'i2c', 'spi', 'pwm', 'adc'];
export const PERIPHERAL_CAPABILITY: Readonly<Record<PeripheralType, string>> = Object.freeze({
  gpio: 'Gpio',
  uart: 'Uart',
  i2c: 'I2cMaster',
  spi: 'SpiMaster',
  pwm: 'Pwm',
  adc: 'Adc',
});

/** §3.4: the power controls an app may be granted. */
export type PowerControl = 'ForcePowerDown' | 'ForceReboot' | 'SetPowerProfile';
export const POWER_CONTROLS: readonly PowerControl[] = ['ForcePowerDown', 'ForceReboot', 'SetPowerProfile'];

/** The parsed, normalized capabilities: every capability present, absent ones empty or false. */
export interface AppCapabilities {
  /** Parsed `AllowedConnections`, names lowercased, IP literals canonical. */
  readonly allowedConnections: readonly HostRule[];
  readonly allowedTcpServerPorts: readonly number[];
  readonly allowedUdpServerPorts: readonly number[];
  /** Component ids this app may talk to, if they list it too (§3.3). */
  readonly allowedApplicationConnections: readonly string[];
  /** Peripheral names by board type: Gpio → gpio, I2cMaster → i2c, SpiMaster → spi, … */
  readonly peripherals: Readonly<Record<PeripheralType, readonly string[]>>;
  /** `MutableStorage.SizeKB`; 0 when the app has no mutable storage. */
  readonly mutableStorageKB: number;
  /** `DeviceAuthentication`: the tenant id whose device certificate the app may use, or null. */
  readonly deviceAuthentication: string | null;
  readonly powerControls: readonly PowerControl[];
  readonly systemEventNotifications: boolean;
  readonly softwareUpdateDeferral: boolean;
  readonly networkConfig: boolean;
  readonly timeSyncConfig: boolean;
}

/** A valid app manifest, normalized (§3). Deeply frozen. */
export interface AppManifest {
  readonly schemaVersion: 1;
  readonly name: string;
  readonly componentId: string;
  readonly entryPoint: string;
  readonly cmdArgs: readonly string[];
  readonly capabilities: AppCapabilities;
}

/** §5.2: where a peripheral's operations go. */
export type PeripheralBackend =
  | { readonly kind: 'sim'; readonly spec: 'sim' }
  /** GPIO character device line: /dev/gpiochipN, line offset. */
  | { readonly kind: 'gpiochip'; readonly spec: string; readonly chip: number; readonly line: number }
  /** A tty device: /dev/ttyS1, /dev/ttyUSB0, /dev/ttyAMA0. */
  | { readonly kind: 'tty'; readonly spec: string; readonly path: string }
  /** An i2c-dev bus: /dev/i2c-N. */
  | { readonly kind: 'i2c-dev'; readonly spec: string; readonly path: string; readonly bus: number }
  /** A spidev device: /dev/spidevB.C. */
  | {
      readonly kind: 'spidev';
      readonly spec: string;
      readonly path: string;
      readonly bus: number;
      readonly chipSelect: number;
    }
  /** A sysfs PWM channel: /sys/class/pwm/pwmchipN/pwmC. */
  | { readonly kind: 'pwmchip'; readonly spec: string; readonly chip: number; readonly channel: number }
  /** An IIO voltage channel: /sys/bus/iio/devices/iio:deviceN/in_voltageC_raw. */
  | { readonly kind: 'iio'; readonly spec: string; readonly device: number; readonly channel: number };

export interface BoardPeripheral {
  readonly name: string;
  readonly type: PeripheralType;
  readonly backend: PeripheralBackend;
}

/** A valid board definition (§5). Deeply frozen. */
export interface BoardDefinition {
  readonly schemaVersion: 1;
  readonly name: string;
  readonly peripherals: ReadonlyMap<string, BoardPeripheral>;
}
