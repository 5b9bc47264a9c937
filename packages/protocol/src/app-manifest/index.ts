export { parseBoardDefinition, parseBoardDefinitionText } from './board.ts';
export type { DeviceCheckCode, DeviceFit, DeviceProblem } from './device.ts';
export { appsMayConnect, checkAppAgainstDevice, connectionAllowed, DEVICE_CHECK_ORDER } from './device.ts';
export * from './format.ts';
export type { HostRule, NormalizedHost } from './host.ts';
export { formatHostRule, hostNameProblem, hostRulesAllow, normalizeHost, parseHostRule } from './host.ts';
export type { AppManifestOptions } from './manifest.ts';
export { parseAppManifest, parseAppManifestText } from './manifest.ts';
