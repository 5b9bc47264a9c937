// The floor for memory per idle connection in Node: a bare node:tls server with the broker's TLS
// settings (client certificate required, verified) that answers CONNECT with CONNACK 0 and holds
// the connection, nothing else. Started by bench/mqtt.ts in its own process; prints "LISTENING".
//
//   node bench/support/bare-tls-server.ts --port P --key FILE --cert FILE --ca FILE
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    port: { type: 'string' },
    key: { type: 'string' },
    cert: { type: 'string' },
    ca: { type: 'string' },
  },
});
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const server = tls.createServer(
  {
    key: readFileSync(String(o.key)),
    cert: readFileSync(String(o.cert)),
    ca: readFileSync(String(o.ca)),
    requestCert: true,
    rejectUnauthorized: true,
    noDelay: true,
  },
  (s) => {
    s.once('data', (d: Buffer) => {
      if (d[0] === 0x10) s.write(CONNACK);
      s.on('data', () => {});
    });
    s.on('error', () => {});
  },
);
server.listen(Number(o.port), '127.0.0.1', () => console.log('LISTENING'));
