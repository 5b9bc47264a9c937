/**
 * Reserved: the MQTT client (connect to the tenant's broker with the device certificate over a
 * brokered mutual-TLS socket, deviceAuth.connect) belongs to its own issue. It goes here and is
 * exported from index.ts as `mqtt`.
 */
export {};
