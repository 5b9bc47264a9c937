/**
 * Where the SDK an app loads comes from. The runtime provides it (docs/apps.md §SDK): `heptad
 * runtime pack` bundles @heptad/sdk into one module and embeds its text in the runtime bundle as
 * HEPTAD_SDK_BUNDLE, so the SDK is signed and measured with the runtime. Run from source (tests),
 * the SDK's own .ts files are used (Node strips their types).
 */
import { readdirSync, readFileSync } from 'node:fs';

declare const HEPTAD_SDK_BUNDLE: string | undefined;

export interface SdkSource {
  /** the module the app process loads first (--import) */
  readonly entry: string;
  readonly files: ReadonlyArray<{ readonly name: string; readonly text: string }>;
}

export function sdkSource(): SdkSource {
  if (typeof HEPTAD_SDK_BUNDLE === 'string')
    return { entry: 'heptad-sdk.mjs', files: [{ name: 'heptad-sdk.mjs', text: HEPTAD_SDK_BUNDLE }] };
  const dir = new URL('../../../sdk/src/', import.meta.url);
  const names = readdirSync(dir).filter((n) => n.endsWith('.ts'));
  return {
    entry: 'index.ts',
    files: names.map((name) => ({ name, text: readFileSync(new URL(name, dir), 'utf8') })),
  };
}
