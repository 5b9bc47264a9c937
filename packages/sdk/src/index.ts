/**
 * @heptad/sdk — what an app imports inside its compartment (docs/apps.md §SDK).
 *
 *     import { gpio, net, fetch, storage, deviceAuth, events, apps, mqtt } from '@heptad/sdk';
 *
 * Every call is a request to the supervisor, checked against the app's manifest; a refusal is a
 * HeptadAppError with a stable `code`. The SDK is provided by the device runtime (like Azure
 * Sphere's applibs): the supervisor loads this module before the app (`--import`) and resolves
 * `@heptad/sdk` to it, so an app package does not carry its own copy.
 */
import { registerHooks } from 'node:module';
import { call, inCompartment } from './channel.ts';

export { apps } from './apps.ts';
export { HeptadAppError, inCompartment } from './channel.ts';
export { type DeviceCertificate, deviceAuth } from './device-auth.ts';
export { events, type UpdatePending } from './events.ts';
export { type MqttHandler, mqtt } from './mqtt.ts';
export { type Connection, type FetchInit, fetch, net } from './net.ts';
export { adc, gpio, i2c, type PinValue, type PwmState, pwm, spi, uart } from './peripherals.ts';
export { storage } from './storage.ts';

export interface AppInfo {
  readonly componentId: string;
  readonly name: string;
  readonly version: string;
}

/** Who the supervisor says this app is. Also the cheapest round trip (used for health and benchmarks). */
export async function hello(): Promise<AppInfo> {
  return call<AppInfo>('hello');
}

const SELF = import.meta.url;

if (inCompartment() && process.env['HEPTAD_APP_COMPONENT_ID'] !== undefined) {
  // `import … from '@heptad/sdk'` in the app resolves to this very module (one instance).
  registerHooks({
    resolve(specifier, context, next) {
      if (specifier === '@heptad/sdk') return { url: SELF, shortCircuit: true };
      return next(specifier, context);
    },
  });
  // The supervisor went away (the runtime stopped or was killed): an app never runs unsupervised.
  process.on('disconnect', () => process.exit(0));
  // The uncaught-error hook: the supervisor records the stack with the crash report.
  process.on('uncaughtException', (e: unknown) => {
    const err = e instanceof Error ? e : new Error(String(e));
    const code = (err as Error & { code?: unknown }).code;
    process.stderr.write(`${err.stack ?? err.message}\n`);
    const crash = {
      t: 'req',
      id: 0,
      op: 'crash',
      args: {
        message: err.message.slice(0, 4000),
        stack: (err.stack ?? '').slice(0, 16_000),
        ...(typeof code === 'string' ? { code } : {}),
      },
    };
    const done = () => process.exit(1);
    setTimeout(done, 1000).unref();
    try {
      process.send?.(crash, undefined, {}, done);
    } catch {
      done();
    }
  });
}
