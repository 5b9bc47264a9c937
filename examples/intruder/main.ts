// intruder: tries what a compromised app would, and prints what happened. Every attempt must
// fail. Attempts the supervisor brokers (a host not in the manifest, another app's storage, an
// undeclared GPIO, a message to an app that does not list it) are refused and recorded by the
// supervisor. Attempts inside the process (child_process, reading the device key) are refused by
// the permission model; the supervisor hears of them when the error escapes, so the intruder lets
// one escape per start (round 0: child_process, round 1: the device key) and is restarted.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { apps, gpio, net, storage } from '@heptad/sdk';

const config = JSON.parse(readFileSync(new URL('./config.json', import.meta.url), 'utf8')) as {
  disallowedHost: string;
  disallowedPort: number;
  victimComponentId: string;
  directConnect: string;
  deviceKeyPath: string;
};

async function attempt(what: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
    console.log(`intruder: ${what}: NOT REFUSED`);
  } catch (e) {
    console.log(`intruder: ${what}: refused ${(e as { code?: string }).code ?? String(e)}`);
  }
}

const round = Number((await storage.readTextIfExists('round')) ?? '0');
await storage.write('round', String(round + 1));

if (round === 0) {
  await attempt('connect to a host not in the manifest', () =>
    net.connect(config.disallowedHost, config.disallowedPort),
  );
  await attempt("read another app's storage", () => storage.read(`../${config.victimComponentId}/state`));
  await attempt('drive an undeclared GPIO', () => gpio.write('LED1', 1));
  await attempt('message an app that does not list it', () => apps.send(config.victimComponentId, 'hi'));
  await attempt('write past the storage quota', () => storage.write('big', new Uint8Array(8192)));
  const [h, p] = config.directConnect.split(':');
  await attempt(
    'connect directly, without the supervisor',
    () =>
      new Promise((resolve, reject) => {
        const s = connect({ host: h, port: Number(p) }, () => {
          s.destroy();
          resolve(null);
        });
        s.on('error', reject);
        s.setTimeout(2000, () => s.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      }),
  );
  console.log('intruder: now child_process (uncaught)');
  const cp = await import('node:child_process');
  cp.execFileSync('/bin/sh', ['-c', 'id']);
  console.log('intruder: child_process: NOT REFUSED');
} else if (round === 1) {
  console.log('intruder: now the device key (uncaught)');
  readFileSync(config.deviceKeyPath);
  console.log('intruder: device key: NOT REFUSED');
} else {
  console.log('intruder: every attempt made');
  setInterval(() => {}, 60_000);
}
