// Loads Herald's dashboard in Debian's Chromium, driven by playwright-core, as given in
// JSON on the command line:
//   node dashboard.mjs '{"url": "http://127.0.0.1:8080/", "user": "u", "password": "p",
//     "clients": ["a", "b"], "filter": "t/#", "topic": "t/x", "screenshot": "out.png"}'
// Waits until the client list shows every one of `clients`, both charts have points and
// the message rate is above zero, then watches `filter` in the topic explorer until a
// message on `topic` shows; saves a screenshot and prints what it saw as one JSON line.

import { chromium } from 'playwright-core';

const input = JSON.parse(process.argv[2]);
const args = [
  '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args,
  timeout: 30000,
});
try {
  const context = await browser.newContext({
    httpCredentials: { username: input.user, password: input.password },
    viewport: { width: 1000, height: 900 },
  });
  const page = await context.newPage();
  page.on('console', (message) => console.error(`page: ${message.text()}`));
  page.on('pageerror', (error) => console.error(`page error: ${error}`));
  await page.goto(input.url);
  const timeout = 20000;
  await page.waitForFunction((ids) => {
    const shown = [...document.querySelectorAll('#clients tr td:first-child')]
      .map((cell) => cell.textContent);
    return ids.every((id) => shown.includes(id));
  }, input.clients, { timeout });
  await page.waitForFunction(() => Number(document.getElementById('rate-in').textContent) > 0
    && Number(document.getElementById('rates-chart').dataset.points) >= 2
    && Number(document.getElementById('connections-chart').dataset.points) >= 2, null, { timeout });
  await page.fill('#filter', input.filter);
  await page.click('#explore button');
  const message = await page.waitForSelector(`#messages div[data-topic="${input.topic}"]`, { timeout });
  await page.screenshot({ path: input.screenshot, fullPage: true });
  const seen = await page.evaluate(() => ({
    clients: [...document.querySelectorAll('#clients tr')]
      .map((row) => [...row.children].map((cell) => cell.textContent)),
    connections: document.getElementById('connections').textContent,
    rate_in: Number(document.getElementById('rate-in').textContent),
    points: Number(document.getElementById('rates-chart').dataset.points),
  }));
  seen.message = await message.textContent();
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
process.exit(process.exitCode ?? 0);
