// The ceiling: a bare node:http (or node:https) server that answers every request with the same
// JSON bytes, from memory. Run as its own process:
//   node bench/support/bare-server.ts BODY_FILE [KEY_FILE CERT_FILE]
// It listens on 127.0.0.1 (a free port), prints "LISTENING <port>", and stops on SIGTERM/SIGINT.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const [bodyFile, keyFile, certFile] = process.argv.slice(2);
if (!bodyFile) {
  process.stderr.write('usage: node bench/support/bare-server.ts BODY_FILE [KEY_FILE CERT_FILE]\n');
  process.exit(2);
}
const body = readFileSync(bodyFile);
const headers = { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length };

const handler = (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(200, headers);
  res.end(body);
};

const server =
  keyFile && certFile
    ? https.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, handler)
    : http.createServer(handler);

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`LISTENING ${port}\n`);
});

const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
