import { runCli } from '../../src/run.ts';

export interface CliRun {
  code: number;
  out: string;
  err: string;
  json: () => Record<string, unknown> & { items?: Array<Record<string, unknown>> };
}

/** Runs the CLI in-process with captured output, the given environment and working folder. */
export async function runCaptured(argv: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<CliRun> {
  let out = '';
  let err = '';
  const code = await runCli(argv, {
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
    },
    env,
    cwd,
  });
  return { code, out, err, json: () => JSON.parse(out) };
}
