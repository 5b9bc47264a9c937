export {
  AppMqtt,
  MAX_APP_DELIVERIES_PENDING,
  MAX_APP_PUBLISHES_IN_FLIGHT,
  MAX_APP_SUBSCRIPTIONS,
  MAX_SESSION_FILTERS,
  type MqttSessionPort,
} from './app-mqtt.ts';
export {
  BrokerSession,
  type BrokerSessionState,
  describeSession,
  parseBrokerUrl,
  reconnectDelay,
} from './session.ts';
export { BROKER_STATUS_PATH, type BrokerStatus, readBrokerStatus } from './status.ts';
export {
  filterMatches,
  fromDeviceTopic,
  MAX_MQTT_PAYLOAD_BYTES,
  MAX_SUBTOPIC_BYTES,
  MAX_SUBTOPIC_LEVELS,
  subtopicProblem,
  toDeviceTopic,
} from './topics.ts';
