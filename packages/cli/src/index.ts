export { COMMANDS } from './commands.ts';
export { CLI_VERSION, findCommand, helpOf, optionsOf, overview, runCli, usageOf } from './run.ts';
export type { CommandSpec, Io } from './spec.ts';
