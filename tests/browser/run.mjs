// Runs scenarios of page/scenario.js (MQTT.js) and page/web.js (web readers) in
// Debian's Chromium, driven by playwright-core, as given in JSON on the command line:
//   node run.mjs '{"server_cert": "server.pem", "broker": "http://127.0.0.1:8080",
//                  "scenarios": [{"run": "runScenario", "args": {...}}, ...]}'
// The page and MQTT.js (from node_modules) are served by a small HTTP server on an
// ephemeral loopback port, so nothing is fetched from the network and Chromium's local
// network access checks see a loopback page talking to a loopback broker. Under
// /broker/ that server passes requests on to `broker`, for what must share the page's
// origin. Prints one JSON line per scenario. The server certificate of wss://
// is trusted by its public key (--ignore-certificate-errors-spki-list), so the test CA
// stays out of any system store. Prints one JSON line per scenario.

import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { createHash, X509Certificate } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const files = {
  '/index.html': ['text/html', join(here, 'page', 'index.html')],
  '/scenario.js': ['text/javascript', join(here, 'page', 'scenario.js')],
  '/web.js': ['text/javascript', join(here, 'page', 'web.js')],
  '/mqtt.min.js': ['text/javascript', join(here, 'node_modules', 'mqtt', 'dist', 'mqtt.min.js')],
};

const input = JSON.parse(process.argv[2]);
const args = [
  '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
if (input.server_cert) {
  const spki = new X509Certificate(readFileSync(input.server_cert)).publicKey
    .export({ type: 'spki', format: 'der' });
  args.push(`--ignore-certificate-errors-spki-list=${createHash('sha256').update(spki).digest('base64')}`);
}

const pages = createServer((request, response) => {
  const path = new URL(request.url, 'http://127.0.0.1').pathname;
  if (path.startsWith('/broker/') && input.broker) {
    const target = new URL(request.url.slice('/broker'.length), input.broker);
    const headers = { ...request.headers, host: target.host };
    const upstream = httpRequest(target, { method: request.method, headers }, (answer) => {
      response.writeHead(answer.statusCode, answer.headers);
      answer.pipe(response);
    });
    upstream.on('error', () => response.destroy());
    // The broker's streams end with the page's request.
    response.on('close', () => upstream.destroy());
    request.pipe(upstream);
    return;
  }
  const file = files[path];
  if (!file) {
    response.writeHead(404).end('not found');
    return;
  }
  response.writeHead(200, { 'Content-Type': file[0] }).end(readFileSync(file[1]));
});
await new Promise((resolve) => pages.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${pages.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args,
  timeout: 30000,
});
try {
  const page = await browser.newPage();
  page.on('console', (message) => console.error(`page: ${message.text()}`));
  page.on('pageerror', (error) => console.error(`page error: ${error}`));
  await page.goto(`${origin}/index.html`);
  for (const { run, args } of input.scenarios) {
    let timer;
    const result = await Promise.race([
      page.evaluate(([name, a]) => window[name](a), [run, args]),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${args.tag}: no result within 30 s`)), 30000);
      }),
    ]).finally(() => clearTimeout(timer));
    console.log(JSON.stringify({ tag: args.tag, ...result }));
  }
} finally {
  await browser.close();
  pages.closeAllConnections();
  pages.close();
}
// Nothing left to wait for, whatever sockets remain.
process.exit(process.exitCode ?? 0);
