import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RunningService, resolveConfig, startService } from '@heptad/service';
import pino from 'pino';

/**
 * `heptad serve` in-process on an ephemeral loopback port (broker too), its data in DIR/data, and
 * the environment the CLI needs to talk to it as the platform operator.
 */
export async function startLiveService(
  dir: string,
): Promise<{ svc: RunningService; env: NodeJS.ProcessEnv }> {
  const svc = await startService(resolveConfig({ data: join(dir, 'data'), listen: '127.0.0.1:0' }), {
    logger: pino({ level: 'silent' }),
    env: {},
  });
  return {
    svc,
    env: {
      HEPTAD_CONFIG_DIR: join(dir, 'cfg'),
      HEPTAD_URL: svc.url,
      HEPTAD_TOKEN: readFileSync(svc.operatorTokenPath, 'utf8').trim(),
      HEPTAD_CA: String(svc.caPath),
    },
  };
}
