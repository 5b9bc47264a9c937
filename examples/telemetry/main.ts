// telemetry: reads ADC0 and POSTs it over HTTPS to every endpoint of config.json, presenting the
// device certificate (mutual TLS made by the supervisor; the key never enters the app). An
// endpoint whose host is not in AllowedConnections is refused by the supervisor. Optional
// config.ca: the PEM the server's certificate must chain to (default: Node's roots).
import { readFileSync } from 'node:fs';
import { adc, fetch } from '@heptad/sdk';

const config = JSON.parse(readFileSync(new URL('./config.json', import.meta.url), 'utf8')) as {
  endpoints: string[];
  intervalMs: number;
  deviceAuth?: boolean;
  ca?: string;
};

async function send(): Promise<void> {
  const value = await adc.read('ADC0');
  for (const url of config.endpoints) {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ adc0: value, at: new Date().toISOString() }),
        ...(config.deviceAuth ? { deviceAuth: true } : {}),
        ...(config.ca ? { ca: config.ca } : {}),
      });
      console.log(`telemetry: POST ${url} → ${res.status} ${(await res.text()).slice(0, 100)}`);
    } catch (e) {
      console.log(`telemetry: POST ${url} → ${(e as { code?: string }).code ?? String(e)}`);
    }
  }
}

await send();
setInterval(() => void send(), config.intervalMs);
