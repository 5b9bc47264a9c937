import type { ServiceClient } from './client.ts';

/** The CLI's commands as data: parsed, documented (docs/cli.md) and tested from this one table. */
export interface OptionSpec {
  readonly name: string;
  readonly type: 'string' | 'boolean';
  readonly description: string;
  readonly valueName?: string;
  readonly required?: boolean;
  readonly multiple?: boolean;
}

export interface ArgSpec {
  readonly name: string;
  readonly description: string;
  readonly required: boolean;
  readonly variadic?: boolean;
}

export interface Io {
  readonly stdout: (s: string) => void;
  readonly stderr: (s: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

export interface CommandContext {
  readonly args: Record<string, string | string[] | undefined>;
  readonly options: Record<string, string | string[] | boolean | undefined>;
  readonly io: Io;
  /** the service client; present when the command declares `service: true` */
  client(): Promise<ServiceClient>;
}

export interface Column {
  readonly header: string;
  readonly get: (row: Record<string, unknown>) => unknown;
}

/** What a command returns: `data` for --output json, and how to show it as a table or text. */
export interface CommandResult {
  readonly data: unknown;
  readonly table?: { readonly columns: readonly Column[]; readonly rows: readonly Record<string, unknown>[] };
  readonly text?: string;
  /** a note printed on stderr in table mode (e.g. "shown once") */
  readonly note?: string;
  /** true: the command wrote its own output as it ran (heptad demo's step lines) */
  readonly printed?: boolean;
  /** for long-running commands (serve): resolves when done */
  readonly wait?: Promise<void>;
}

export interface CommandSpec {
  readonly path: readonly string[];
  readonly summary: string;
  readonly description?: string;
  readonly args: readonly ArgSpec[];
  readonly options: readonly OptionSpec[];
  /** true: takes --url/--token/--ca/--profile and talks to a service */
  readonly service: boolean;
  readonly examples?: readonly string[];
  run(ctx: CommandContext): Promise<CommandResult>;
}

export const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  { name: 'output', type: 'string', valueName: 'table|json', description: 'output format (default table)' },
  { name: 'help', type: 'boolean', description: 'show help for the command' },
];

export const SERVICE_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'url',
    type: 'string',
    valueName: 'URL',
    description: 'service URL (or HEPTAD_URL, or the profile)',
  },
  {
    name: 'token',
    type: 'string',
    valueName: 'TOKEN',
    description: 'API token (or HEPTAD_TOKEN, or the profile)',
  },
  {
    name: 'ca',
    type: 'string',
    valueName: 'FILE',
    description: 'CA certificate to trust for the service (or HEPTAD_CA, or the profile)',
  },
  {
    name: 'profile',
    type: 'string',
    valueName: 'NAME',
    description: 'saved profile to use (or HEPTAD_PROFILE; default "default")',
  },
];
