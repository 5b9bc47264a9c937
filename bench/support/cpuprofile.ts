// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and per package.

import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  readonly name: string;
  readonly where: string;
  readonly ms: number;
  readonly percent: number;
}

export interface ProfileSummary {
  /** sampled time inside the window (or the whole profile) */
  readonly totalMs: number;
  /** false when the window did not overlap the profile and the whole profile was used */
  readonly windowed: boolean;
  readonly functions: SelfTime[];
  readonly packages: SelfTime[];
}

/** Shortens a script URL to something readable: the package, or the path inside the project. */
function place(url: string, root: string): string {
  if (url === '') return '(native)';
  if (url.startsWith('node:')) return url;
  const path = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) return path.slice(nm + '/node_modules/'.length);
  return path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
}

function packageOf(where: string): string {
  if (where.startsWith('node:') || where.startsWith('('))
    return where.startsWith('node:') ? 'node: (core)' : where;
  const parts = where.split('/');
  if (parts[0] === 'packages') return parts.slice(0, 2).join('/');
  return parts[0]?.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? where);
}

/**
 * Self time per function and package. `window` (CLOCK_MONOTONIC microseconds, as
 * process.hrtime gives and V8 stamps profiles with) keeps only the samples taken under load.
 */
export function summariseProfile(
  file: string,
  root: string,
  top = 20,
  window?: { startUs: number; endUs: number },
): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const windowed =
    window !== undefined && window.startUs < profile.endTime && window.endUs > profile.startTime;
  const selfUs = new Map<number, number>();
  let totalUs = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (windowed && (t < window.startUs || t > window.endUs)) continue;
    const id = profile.samples[i] ?? -1;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
    totalUs += delta;
  }
  const fns = new Map<string, { name: string; where: string; us: number }>();
  const pkgs = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const f = node.callFrame;
    const at = place(f.url, root);
    const where = f.url === '' ? at : `${at}:${f.lineNumber + 1}`;
    const name = f.functionName || '(anonymous)';
    const key = `${name} ${where}`;
    const e = fns.get(key) ?? { name, where, us: 0 };
    e.us += us;
    fns.set(key, e);
    // (idle), (garbage collector), (program) stay as they are; native functions and regexps are grouped.
    const pkg =
      f.url !== ''
        ? packageOf(at)
        : name.startsWith('(')
          ? name
          : name.startsWith('RegExp:')
            ? '(regexps)'
            : `native ${name}`;
    pkgs.set(pkg, (pkgs.get(pkg) ?? 0) + us);
  }
  const pct = (us: number) => (100 * us) / totalUs;
  return {
    totalMs: totalUs / 1000,
    windowed,
    functions: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => ({ name: e.name, where: e.where, ms: e.us / 1000, percent: pct(e.us) })),
    packages: [...pkgs.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, where: '', ms: us / 1000, percent: pct(us) })),
  };
}
