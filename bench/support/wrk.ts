// wrk (Debian's 4.1.0) as the load generator: one client process, separate from every server.
// Each run ends with a Lua done() hook that prints one JSON line, so nothing parses wrk's text.

import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLOCK_TICKS, cpuMeter, machineMeter, start, stop } from './proc.ts';

export interface WrkRun {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** socket errors plus non-2xx/3xx answers plus timeouts (wrk's own counts) */
  readonly errors: number;
  /** answers the script judged wrong (writes: anything but 200) */
  readonly bad: number;
  /** requests the script built (writes: device ids handed out) */
  readonly issued: number;
  /** the claim script ran out of device ids: the run is not valid */
  readonly exhausted: boolean;
  /** percent of one core */
  readonly serverCpu: number;
  readonly clientCpu: number;
  /** CPU used meanwhile by everything else on the machine (other people's work, PostgreSQL for SQLite cases…) */
  readonly otherCpu: number;
  /** when wrk started and ended, CLOCK_MONOTONIC microseconds (to cut a CPU profile to the run) */
  readonly startUs: number;
  readonly endUs: number;
}

/** Finds wrk; when missing and allowed (root with apt-get), installs Debian's package and says so. */
export function ensureWrk(log: (s: string) => void): string {
  const found = which('wrk');
  if (found) return found;
  const asRoot = process.getuid?.() === 0;
  if (!asRoot || !which('apt-get')) {
    throw new Error('wrk is not installed: install it (Debian: `apt-get install -y wrk`) and re-run');
  }
  const install = (args: string[]) => {
    log(`bench: wrk not found; running: apt-get ${args.join(' ')}`);
    const r = spawnSync('apt-get', args, {
      stdio: ['ignore', 2, 2], // apt's chatter goes to stderr, stdout carries only results
      timeout: 300_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    return r.status === 0;
  };
  if (!install(['install', '-y', 'wrk'])) {
    // The package lists may be stale or missing: refresh them once and try again.
    install(['update']);
    if (!install(['install', '-y', 'wrk']))
      throw new Error('apt-get install -y wrk failed; install wrk and re-run');
  }
  const path = which('wrk');
  if (!path) throw new Error('wrk still not found after apt-get install');
  log(`bench: installed ${path} (${wrkVersion(path)})`);
  return path;
}

export function wrkVersion(wrk: string): string {
  const r = spawnSync(wrk, ['-v'], { encoding: 'utf8', timeout: 5_000 });
  return /wrk \S+/.exec(`${r.stdout}${r.stderr}`)?.[0] ?? 'wrk (unknown version)';
}

function which(cmd: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const luaString = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

/** Shared tail of every script: collects the threads and prints the result as one JSON line. */
const DONE = `
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local issued, exhausted, bad = 0, 0, 0
  for _, t in ipairs(threads) do
    issued = issued + (t:get("issued") or 0)
    exhausted = exhausted + (t:get("exhausted") or 0)
    bad = bad + (t:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%.0f,"durationUs":%.0f,"errors":%.0f,' ..
    '"p50Us":%.0f,"p99Us":%.0f,"maxUs":%.0f,"issued":%.0f,"exhausted":%.0f,"bad":%.0f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, issued, exhausted, bad))
end
`;

/** GET one path with a bearer token: a static request, so wrk calls no Lua per request. */
export function readScript(dir: string, name: string, path: string, token: string | null): string {
  const file = join(dir, `${name}.lua`);
  const auth = token === null ? '' : `wrk.headers["Authorization"] = ${luaString(`Bearer ${token}`)}\n`;
  writeFileSync(file, `wrk.method = "GET"\nwrk.path = ${luaString(path)}\n${auth}${DONE}`, { mode: 0o600 });
  return file;
}

/**
 * POST /v1/devices/claim with one new device id per request, walking `idsFile` (one id a line).
 * When the ids run out the thread stops and the run is reported as exhausted (not valid): wrk
 * would otherwise keep its clock running while no requests go out.
 */
export function claimScript(dir: string, name: string, idsFile: string, token: string): string {
  const file = join(dir, `${name}.lua`);
  const lua = `
wrk.method = "POST"
wrk.headers["Authorization"] = ${luaString(`Bearer ${token}`)}
wrk.headers["Content-Type"] = "application/json"
ids = {}
issued = 0
exhausted = 0
bad = 0
function init(args)
  for line in io.lines(${luaString(idsFile)}) do ids[#ids + 1] = line end
end
function request()
  issued = issued + 1
  local id = ids[issued]
  if id == nil then
    exhausted = 1
    wrk.thread:stop()
    id = ids[#ids]
  end
  return wrk.format("POST", "/v1/devices/claim", nil, '{"deviceIds":["' .. id .. '"]}')
end
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("claim answered " .. status .. ": " .. string.sub(body, 1, 300) .. "\\n") end
  end
end
${DONE}`;
  writeFileSync(file, lua, { mode: 0o600 });
  return file;
}

export interface WrkOptions {
  readonly wrk: string;
  readonly url: string;
  readonly script: string;
  readonly threads: number;
  readonly connections: number;
  readonly seconds: number;
  /** processes whose CPU counts as the server's */
  readonly serverPids: () => readonly number[];
}

/** One wrk run with a hard time limit; the client's CPU comes from its shell's cutime/cstime. */
export async function runWrk(o: WrkOptions): Promise<WrkRun> {
  const args = [
    '-t',
    String(o.threads),
    '-c',
    String(o.connections),
    '-d',
    `${o.seconds}s`,
    '--timeout',
    '5s',
    '--latency',
    '-s',
    o.script,
    o.url,
  ];
  // sh waits for wrk, then prints its own children's CPU time (fields 16 and 17 of /proc/$$/stat).
  const shell =
    'wrk_bin="$1"; shift; "$wrk_bin" "$@"; rc=$?; echo "BENCHCPU $(cut -d" " -f16,17 /proc/$$/stat)"; exit $rc';
  const serverCpu = cpuMeter(o.serverPids);
  const machine = machineMeter();
  const t0 = performance.now();
  const startUs = Number(process.hrtime.bigint() / 1000n);
  const p = start('wrk', 'sh', ['-c', shell, 'sh', o.wrk, ...args], { detached: true });
  const limit = setTimeout(() => void stop(p, 2_000), (o.seconds + 20) * 1000);
  const code = await p.exited;
  clearTimeout(limit);
  const wall = (performance.now() - t0) / 1000;
  const endUs = Number(process.hrtime.bigint() / 1000n);
  const server = serverCpu();
  const all = machine();
  const out = p.output();
  const json = /BENCHJSON (\{.*\})/.exec(out);
  const cpu = /BENCHCPU (\d+) (\d+)/.exec(out);
  if (code !== 0 || !json?.[1]) throw new Error(`wrk failed (exit ${code}):\n${out.slice(-3000)}`);
  const r = JSON.parse(json[1]) as Record<string, number>;
  const num = (k: string) => r[k] ?? 0;
  const seconds = num('durationUs') / 1e6;
  const clientCpu = cpu ? (100 * (Number(cpu[1]) + Number(cpu[2]))) / CLOCK_TICKS / wall : Number.NaN;
  return {
    requests: num('requests'),
    seconds,
    rps: num('requests') / seconds,
    p50Ms: num('p50Us') / 1000,
    p99Ms: num('p99Us') / 1000,
    maxMs: num('maxUs') / 1000,
    errors: num('errors'),
    bad: num('bad'),
    issued: num('issued'),
    exhausted: num('exhausted') > 0,
    serverCpu: server,
    clientCpu,
    otherCpu: Math.max(0, all - server - clientCpu),
    startUs,
    endUs,
  };
}
