import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { HeptadError } from '@heptad/protocol';
import type { CommandContext } from './spec.ts';

/** A string option or argument, or undefined. */
export const str = (ctx: CommandContext, name: string): string | undefined => {
  const v = ctx.options[name] ?? ctx.args[name];
  return typeof v === 'string' ? v : undefined;
};

/** A file named on the command line (relative to the working folder), or CLI_FILE_UNREADABLE. */
export function readFileArg(ctx: CommandContext, path: string, what: string): Buffer;
export function readFileArg(ctx: CommandContext, path: string, what: string, encoding: 'utf8'): string;
export function readFileArg(
  ctx: CommandContext,
  path: string,
  what: string,
  encoding?: 'utf8',
): Buffer | string {
  try {
    return encoding
      ? readFileSync(resolve(ctx.io.cwd, path), encoding)
      : readFileSync(resolve(ctx.io.cwd, path));
  } catch (cause) {
    throw new HeptadError('CLI_FILE_UNREADABLE', `cannot read ${what} ${path}`, { cause });
  }
}

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** `--version`: a semantic version (image-package.md §3), or CLI_USAGE. */
export function versionOption(ctx: CommandContext): string {
  const version = String(str(ctx, 'version'));
  if (!SEMVER.test(version) || version.length > 128)
    throw new HeptadError('CLI_USAGE', '--version must be a semantic version such as 1.0.0');
  return version;
}

/** `--security-version`: 0–2147483647 (`fallback` when absent), or CLI_USAGE. */
export function securityVersionOption(ctx: CommandContext, fallback?: string): number {
  const sv = str(ctx, 'security-version') ?? fallback ?? '';
  if (!/^\d{1,10}$/.test(sv) || Number(sv) > 2 ** 31 - 1)
    throw new HeptadError('CLI_USAGE', '--security-version must be a whole number 0–2147483647');
  return Number(sv);
}
