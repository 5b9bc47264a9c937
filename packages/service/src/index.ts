export { type AppOptions, buildApp, DEFAULT_BODY_LIMIT } from './app.ts';
export * from './config.ts';
export { OPERATOR_TOKEN_FILE, PLATFORM_CA_FILE, type RunningService, startService } from './serve.ts';
export { type Connection, connect } from './store/connect.ts';
export { Store } from './store/store.ts';
