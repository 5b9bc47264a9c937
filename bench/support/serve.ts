// `heptad serve` as its own process for benchmarks: spawned from the repository root, and ready
// once it has printed its `--output json` start-up record (URL, operator token file, CA file).
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');

export interface Served {
  readonly child: ChildProcess;
  readonly url: string;
  readonly token: string;
  readonly ca: string;
}

/**
 * Runs `command ...argv` (e.g. `node [flags] packages/cli/src/main.ts serve … --output json`, or the
 * same under `taskset`), adds the child to `children` (stopped by the caller) and waits up to 30 s
 * for the start-up record.
 */
export async function spawnServe(
  command: string,
  argv: readonly string[],
  children: ChildProcess[],
): Promise<Served> {
  const child = spawn(command, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  const info = await new Promise<Record<string, string>>((res, rej) => {
    const timer = setTimeout(() => rej(new Error('serve did not start in 30 s')), 30_000);
    child.stdout?.on('data', (c) => {
      out += c;
      try {
        const j = JSON.parse(out) as Record<string, string>;
        clearTimeout(timer);
        res(j);
      } catch {
        // not the whole record yet
      }
    });
    child.on('exit', (code) => rej(new Error(`serve exited ${code}`)));
  });
  return {
    child,
    url: String(info['url']),
    token: readFileSync(String(info['operatorTokenFile']), 'utf8').trim(),
    ca: readFileSync(String(info['caFile']), 'utf8'),
  };
}
