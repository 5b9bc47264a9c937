// The supervisor: apps in compartments, brokered capabilities (docs/apps.md).
export { type Answer, type BrokerDeps, type BrokeredApp, CapabilityBroker } from './broker.ts';
export {
  compartmentArgv,
  DEFAULT_APP_MEMORY_LIMIT,
  type IsolationLayers,
  type IsolationOptions,
  planIsolation,
} from './isolation.ts';
export { Peripherals, SIM_INPUTS_PATH, SIM_STATE_PATH, type SimState } from './peripherals.ts';
export {
  APP_DATA_DIR,
  APP_DEFERRAL_CAP_MS,
  APPS_STATUS_PATH,
  type AppHealth,
  type AppRunState,
  AppSupervisor,
  type DeferralAnswer,
  isAppChannelFault,
  RUNTIME_DEFERRAL_CAP_MS,
  type SupervisorOptions,
} from './supervisor.ts';
