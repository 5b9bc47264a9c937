import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ERROR_REGISTRY, HeptadError, isErrorCode, isHeptadError } from '@heptad/protocol';
import { ApiError, ServiceClient } from './client.ts';
import { COMMANDS } from './commands.ts';
import { renderRecord, renderTable } from './output.ts';
import { readProfiles } from './profiles.ts';
import { type CommandSpec, GLOBAL_OPTIONS, type Io, type OptionSpec, SERVICE_OPTIONS } from './spec.ts';

export const CLI_VERSION = '0.1.0';

export function optionsOf(cmd: CommandSpec): OptionSpec[] {
  return [...cmd.options, ...(cmd.service ? SERVICE_OPTIONS : []), ...GLOBAL_OPTIONS];
}

/** Finds the command named by the leading words of argv (longest match). */
export function findCommand(argv: readonly string[]): { cmd: CommandSpec; rest: string[] } | undefined {
  let best: CommandSpec | undefined;
  for (const cmd of COMMANDS) {
    if (cmd.path.every((w, i) => argv[i] === w) && (!best || cmd.path.length > best.path.length)) best = cmd;
  }
  return best ? { cmd: best, rest: argv.slice(best.path.length) } : undefined;
}

export function usageOf(cmd: CommandSpec): string {
  const args = cmd.args.map((a) =>
    a.required ? `${a.name}${a.variadic ? '…' : ''}` : `[${a.name}${a.variadic ? '…' : ''}]`,
  );
  const req = cmd.options.filter((o) => o.required).map((o) => `--${o.name} ${o.valueName ?? 'VALUE'}`);
  return ['heptad', ...cmd.path, ...args, ...req, '[options]'].join(' ');
}

export function helpOf(cmd: CommandSpec): string {
  const lines = [`Usage: ${usageOf(cmd)}`, '', cmd.summary];
  if (cmd.description) lines.push('', cmd.description);
  if (cmd.args.length > 0) {
    lines.push('', 'Arguments:');
    for (const a of cmd.args) lines.push(`  ${a.name.padEnd(24)} ${a.description}`);
  }
  lines.push('', 'Options:');
  for (const o of optionsOf(cmd)) {
    const flag = `--${o.name}${o.type === 'string' ? ` ${o.valueName ?? 'VALUE'}` : ''}`;
    lines.push(
      `  ${flag.padEnd(24)} ${o.description}${o.required ? ' (required)' : ''}${o.multiple ? ' (repeatable)' : ''}`,
    );
  }
  if (cmd.examples?.length) lines.push('', 'Examples:', ...cmd.examples.map((e) => `  ${e}`));
  return `${lines.join('\n')}\n`;
}

export function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.path.join(' ').length));
  return [
    'heptad: the command line of the Heptad security platform',
    '',
    'Usage: heptad COMMAND [arguments] [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.path.join(' ').padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --output json. Run heptad COMMAND --help for its options.',
    '',
  ].join('\n');
}

function resolveService(cmd: CommandSpec, options: Record<string, unknown>, io: Io): ServiceClient {
  const env = io.env;
  const profileName = (options['profile'] as string | undefined) ?? env['HEPTAD_PROFILE'] ?? 'default';
  const profiles = readProfiles(env).profiles;
  const profile = profiles[profileName];
  if ((options['profile'] !== undefined || env['HEPTAD_PROFILE'] !== undefined) && !profile) {
    throw new HeptadError('CLI_NOT_CONFIGURED', `no saved profile "${profileName}"`);
  }
  const url = (options['url'] as string | undefined) ?? env['HEPTAD_URL'] ?? profile?.url;
  const token = (options['token'] as string | undefined) ?? env['HEPTAD_TOKEN'] ?? profile?.token;
  if (!url || !token)
    throw new HeptadError('CLI_NOT_CONFIGURED', `${cmd.path.join(' ')} needs a service URL and a token`);
  const caFile = (options['ca'] as string | undefined) ?? env['HEPTAD_CA'];
  let caPem: string | undefined = profile?.caPem;
  if (caFile) {
    try {
      caPem = readFileSync(resolve(io.cwd, caFile), 'utf8');
    } catch (cause) {
      throw new HeptadError('CLI_FILE_UNREADABLE', `cannot read CA file ${caFile}`, { cause });
    }
  }
  return new ServiceClient({ url, token: token.trim(), ...(caPem ? { caPem } : {}) });
}

/** One line on stderr: the code, what went wrong, what to do. */
export function describeError(e: unknown): { line: string; exitCode: number } {
  if (e instanceof ApiError) {
    const rid = e.requestId ? ` (request ${e.requestId})` : '';
    return { line: `heptad: ${e.code}: ${e.message}${e.hint ? ` — ${e.hint}` : ''}${rid}`, exitCode: 1 };
  }
  if (isHeptadError(e)) {
    return {
      line: `heptad: ${e.code}: ${e.message} — ${ERROR_REGISTRY[e.code].hint}`,
      exitCode: e.code === 'CLI_USAGE' ? 2 : 1,
    };
  }
  // A coded refusal from elsewhere (e.g. the device agent's ServiceRefusal): keep its code.
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string' && /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$/.test(code)) {
    const hint = isErrorCode(code) ? ` — ${ERROR_REGISTRY[code].hint}` : '';
    const message = (e as Error).message || (isErrorCode(code) ? ERROR_REGISTRY[code].title : '');
    return { line: `heptad: ${code}: ${message}${hint}`, exitCode: 1 };
  }
  return { line: `heptad: INTERNAL_ERROR: ${(e as Error)?.message ?? String(e)}`, exitCode: 1 };
}

/** Runs the CLI on argv with the given I/O; returns the exit status. Never calls process.exit. */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  let client: ServiceClient | undefined;
  try {
    if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
      const topic = argv[0] === 'help' ? findCommand(argv.slice(1)) : undefined;
      io.stdout(topic ? helpOf(topic.cmd) : overview());
      return 0;
    }
    if (argv[0] === '--version' || argv[0] === 'version') {
      io.stdout(`heptad ${CLI_VERSION}\n`);
      return 0;
    }
    const found = findCommand(argv);
    if (!found) {
      throw new HeptadError(
        'CLI_USAGE',
        `unknown command "${argv
          .filter((a) => !a.startsWith('-'))
          .slice(0, 2)
          .join(' ')}"; run heptad help`,
      );
    }
    const { cmd, rest } = found;
    const specs = optionsOf(cmd);
    let parsed: ReturnType<typeof parseArgs>;
    try {
      parsed = parseArgs({
        args: rest,
        allowPositionals: true,
        strict: true,
        options: Object.fromEntries(
          specs.map((o) => [o.name, { type: o.type, ...(o.multiple ? { multiple: true } : {}) }]),
        ),
      });
    } catch (cause) {
      throw new HeptadError(
        'CLI_USAGE',
        `${(cause as Error).message.split('\n')[0]} (heptad ${cmd.path.join(' ')} --help)`,
        { cause },
      );
    }
    const options = parsed.values as Record<string, string | string[] | boolean | undefined>;
    if (options['help']) {
      io.stdout(helpOf(cmd));
      return 0;
    }
    const output = (options['output'] as string | undefined) ?? 'table';
    if (output !== 'table' && output !== 'json')
      throw new HeptadError('CLI_USAGE', '--output must be table or json');
    for (const o of cmd.options) {
      if (o.required && options[o.name] === undefined)
        throw new HeptadError('CLI_USAGE', `--${o.name} is required (${usageOf(cmd)})`);
    }
    const positionals = [...parsed.positionals];
    const args: Record<string, string | string[] | undefined> = {};
    for (const a of cmd.args) {
      if (a.variadic) {
        args[a.name] = positionals.splice(0);
      } else {
        args[a.name] = positionals.shift();
      }
      const v = args[a.name];
      if (a.required && (v === undefined || (Array.isArray(v) && v.length === 0))) {
        throw new HeptadError('CLI_USAGE', `${a.name} is required (${usageOf(cmd)})`);
      }
    }
    if (positionals.length > 0)
      throw new HeptadError('CLI_USAGE', `unexpected argument "${positionals[0]}" (${usageOf(cmd)})`);

    const result = await cmd.run({
      args,
      options,
      io,
      client: async () => {
        client ??= resolveService(cmd, options, io);
        return client;
      },
    });
    if (result.printed) {
      // already written, line by line, as the command ran
    } else if (output === 'json') {
      io.stdout(`${JSON.stringify(result.data ?? null, null, 2)}\n`);
    } else if (result.table) {
      io.stdout(renderTable(result.table.columns, result.table.rows));
    } else if (result.text !== undefined) {
      io.stdout(result.text);
    } else if (result.data && typeof result.data === 'object') {
      io.stdout(renderRecord(Object.entries(result.data as Record<string, unknown>)));
    }
    if (result.note && output === 'table') io.stderr(`${result.note}\n`);
    if (result.wait) await result.wait;
    return 0;
  } catch (e) {
    const { line, exitCode } = describeError(e);
    io.stderr(`${line}\n`);
    return exitCode;
  } finally {
    client?.close();
  }
}
