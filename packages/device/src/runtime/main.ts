/**
 * Entry point of the runtime bundle (`heptad runtime pack` bundles this file and everything it
 * imports into one ES module). The bootloader pipes the verified bundle into `node -` with an
 * IPC channel; nothing is read from disk as code.
 */
import {
  type BootInfo,
  ENV_BOOT,
  ENV_SETTINGS,
  ENV_STATE_DIR,
  EXIT,
  type RuntimeSettings,
} from '../boot/contract.ts';
import { isAppChannelFault } from '../supervisor/supervisor.ts';
import { DeviceRuntime } from './runtime.ts';

const log = (line: string) => process.stdout.write(`[runtime] ${line}\n`);

function fromEnv<T>(name: string): T {
  const raw = process.env[name];
  if (raw === undefined) {
    log(`${name} is not set: the runtime is started by "heptad device run", not directly`);
    process.exit(2);
  }
  return JSON.parse(raw) as T;
}

const runtime = new DeviceRuntime({
  stateDir: fromEnv<string>(ENV_STATE_DIR),
  boot: fromEnv<BootInfo>(ENV_BOOT),
  settings: fromEnv<RuntimeSettings>(ENV_SETTINGS),
  send: (m) => {
    if (process.connected) process.send?.(m);
  },
  exit: (code) => process.exit(code),
  log,
});

process.on('SIGTERM', () => runtime.stop(EXIT.STOPPED));
process.on('SIGINT', () => runtime.stop(EXIT.STOPPED));
// The bootloader went away (killed, crashed): a runtime never runs unsupervised.
process.on('disconnect', () => runtime.stop(EXIT.STOPPED));

// A runtime error is reported (the queue is durable) before the runtime exits as crashed.
process.on('uncaughtException', (e) => {
  // An app's garbage on its IPC channel surfaces here; it must not take the runtime down.
  if (isAppChannelFault(e)) {
    runtime.apps?.noteChannelFault();
    return;
  }
  runtime.record('runtime-error', {
    message: e.message.slice(0, 1000),
    ...(e.stack ? { stack: e.stack } : {}),
  });
  log(`runtime error: ${e.message}`);
  process.exit(1);
});

runtime.start().catch((e: unknown) => {
  log(`runtime failed to start: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
