export { buildApp, type AppOptions, DEFAULT_BODY_LIMIT } from './app.ts';
export * from './config.ts';
export { startService, type RunningService, PLATFORM_CA_FILE, OPERATOR_TOKEN_FILE } from './serve.ts';
export { connect, type Connection } from './store/connect.ts';
export { Store } from './store/store.ts';
