#!/usr/bin/env node
// Entry for `npx heptad`: the CLI is TypeScript run by Node 24's type stripping.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `heptad: NODE_TOO_OLD: Node ${process.versions.node} found, Node 24 needed; run ./heptad from the repository (it brings Node 24)\n`,
  );
  process.exit(1);
}
// Cache compiled (type-stripped) modules between runs: halves the start-up of every command.
const { enableCompileCache } = await import('node:module');
enableCompileCache?.();
await import('../src/main.ts');
