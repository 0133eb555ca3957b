// Drives the partner console (/console) in headless Chromium against an
// isolated stack: run by scripts/console-test.sh under `lab stack`, whose
// settings (BASE_URL, GATEWAY_BIN, DATABASE_URL, STACK_DIR, SPARE_ADDR, ...)
// it reads. It makes a partner whose name is markup, with a webhook endpoint
// of its own (a receiver here), makes calls, then in the browser: enters the
// key, sees the call made a moment before, opens it, replays its event and
// sees the new attempt; checks that the key is in no URL, cookie or log line
// and that markup from the API shows as text; checks the page at a phone's
// width and the read-only and test switches of the OneOffice-Key header;
// saves a screenshot of each view in bin/. Exits 1 on the first failed check.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const require = createRequire(path.resolve('bin/playwright/package.json'));
const { chromium } = require('playwright-core');

const env = process.env;
const base = env.BASE_URL;
const partner = '<script>alert(1)</script>';
const hostileName = '<script>alert(1)</script>';
const hostileRid = '<img src=x onerror=alert(1)>';
const rid = 'req-console-1';
const width = 375;
let checks = 0;

function check(ok, what) {
  if (!ok) {
    console.error(`console-test: FAIL: ${what}`);
    process.exit(1);
  }
  checks++;
  console.error(`console-test: ok: ${what}`);
}

// A partner's endpoint: answers 200 and keeps each webhook-id it got.
const got = [];
const [host, port] = env.SPARE_ADDR.split(':');
const receiver = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => { got.push(req.headers['webhook-id']); res.writeHead(200).end('ok'); });
});
await new Promise((ok) => receiver.listen(Number(port), host, ok));

const admin = (...args) => execFileSync(env.GATEWAY_BIN, args, { env, encoding: 'utf8' }).trim();
const key = admin('keys', 'create', '--partner', partner);
check(/^oo_\w+$/.test(key) || key.length >= 20, 'keys create printed a key');
admin('webhooks', 'set', '--partner', partner, '--url', `http://${env.SPARE_ADDR}/hooks`);

async function api(method, params, headers = {}) {
  const r = await fetch(base + '/', {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key, ...headers },
    body: JSON.stringify({ method, params }),
  });
  return { status: r.status, body: await r.json() };
}

async function until(what, f, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await f()) return;
    if (Date.now() > end) check(false, what);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

let r = await api('createCustomer', { id: 'C1', name: hostileName, admin: { email: 'a@example.com' } }, { 'X-Request-Id': rid });
check(r.status === 200 && r.body.name === hostileName, `createCustomer answered 200 (${r.status})`);
r = await api('createFirstOrder', { customer: 'C1', id: 'O1', product: 'oo-std', licenses: 5, duration: 'monthly' },
  { 'X-Request-Id': hostileRid });
check(r.status === 200, `createFirstOrder answered 200 (${r.status})`);
await until('both events delivered to the receiver', () => got.length >= 2);

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
});
try {
  const context = await browser.newContext({ viewport: { width, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  const urls = [];
  const problems = [];
  page.on('request', (req) => urls.push(req.url()));
  page.on('dialog', (d) => { problems.push('a dialog opened: ' + d.message()); d.dismiss(); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });

  const resp = await page.goto(base + '/console');
  const h = resp.headers();
  check(resp.status() === 200 && h['content-security-policy'].includes("default-src 'none'") &&
    h['x-frame-options'] === 'DENY' && h['referrer-policy'] === 'no-referrer', 'the page is served with its CSP, DENY and no-referrer');

  // Enter the key; the call made a moment before is listed.
  await page.fill('#key', key);
  await page.click('#login-form button[type=submit]');
  const row = page.locator(`#r-list li[data-request-id="${rid}"]`);
  await row.waitFor();
  check((await row.textContent()).includes('createCustomer'), 'the requests view lists the createCustomer call');
  const hostileRow = page.locator('#r-list li', { hasText: hostileRid });
  check(await hostileRow.count() === 1, 'a request id holding <img onerror> is listed as text');
  check(await page.locator('#key').inputValue() === '', 'the key field is emptied once used');
  await page.locator('#partner:not([hidden])').waitFor();
  check(await page.locator('#partner').textContent() === partner, 'the partner name holding <script> shows as text');
  await page.screenshot({ path: 'bin/console-requests.png', fullPage: true });

  // Open it: status, response, trace id, its event and its attempt.
  await row.click();
  await page.locator('#d-events li.event').waitFor();
  const fields = await page.locator('#d-fields').textContent();
  check(fields.includes(rid) && fields.includes('succeeded') && /[0-9a-f]{32}/.test(fields), 'the detail shows the status and a trace id');
  check((await page.locator('#d-body').textContent()).includes(hostileName), 'the response body shows <script> as text');
  const card = page.locator('#d-events li.event');
  check(await card.locator('tr.attempt').count() === 1, 'its event shows one delivery attempt');
  check(await page.evaluate(() => document.scripts.length === 1 && document.images.length === 0),
    'no script or image came from the API data');
  await page.screenshot({ path: 'bin/console-request.png', fullPage: true });

  // Replay it and see the new attempt.
  const before = got.length;
  const eventId = await card.getAttribute('data-event-id');
  await card.locator('button.replay').click();
  await page.locator('#d-events li.event .replay-state', { hasText: 'Sent again: HTTP 200' }).waitFor();
  check(await page.locator('#d-events li.event tr.attempt').count() === 2, 'the event shows the replay as a second attempt');
  await until('the receiver got the replay', () => got.length > before);
  check(got[got.length - 1] === eventId && got.filter((id) => id === eventId).length === 2,
    'the replay arrived with the same webhook-id');

  // The events view.
  await page.click('#nav-events');
  await page.locator(`#e-list li.event[data-event-id="${eventId}"]`).waitFor();
  check(await page.locator('#e-list li.event').count() === 2, 'the events view lists both events');
  check(await page.evaluate((w) => document.documentElement.scrollWidth <= w, width), `no view is wider than ${width} px`);
  await page.screenshot({ path: 'bin/console-events.png', fullPage: true });

  // The key: in sessionStorage only; in no URL, cookie or log line.
  check(await page.evaluate((k) => sessionStorage.getItem('oneoffice.key') === k && localStorage.length === 0 &&
    document.cookie === '', key), 'the key is in sessionStorage only');
  check(urls.length > 0 && !urls.some((u) => u.includes(key)) && !page.url().includes(key), `the key is in none of ${urls.length} URLs`);
  const cookies = await context.cookies();
  check(!cookies.some((c) => c.value.includes(key) || c.name.includes(key)), `the key is in none of ${cookies.length} cookies`);
  let lines = 0;
  let requestLines = 0;
  for (const f of readdirSync(env.STACK_DIR).filter((f) => f.endsWith('.log'))) {
    const text = readFileSync(path.join(env.STACK_DIR, f), 'utf8');
    lines += text.split('\n').length;
    requestLines += text.split('\n').filter((l) => l.includes('"msg":"request"')).length;
    check(!text.includes(key) && !text.includes(key.slice(-16)), `the key is in no line of ${f}`);
  }
  check(requestLines > 5, `the logs were read (${lines} lines, ${requestLines} request lines)`);

  // The OneOffice-Key header: a test, read-only key shows TEST and no replay.
  const ro = await context.newPage();
  ro.on('dialog', (d) => { problems.push('a dialog opened: ' + d.message()); d.dismiss(); });
  await ro.route(base + '/', async (route) => {
    const res = await route.fetch();
    await route.fulfill({ response: res, headers: { ...res.headers(), 'oneoffice-key': 'test, read-only' } });
  });
  await ro.goto(base + '/console');
  await ro.fill('#key', key);
  await ro.click('#login-form button[type=submit]');
  await ro.locator(`#r-list li[data-request-id="${rid}"]`).click();
  await ro.locator('#d-events li.event').waitFor();
  check(await ro.locator('#mode').textContent() === 'TEST' && await ro.locator('#readonly').isVisible() &&
    await ro.locator('button.replay').count() === 1 && !(await ro.locator('button.replay').isVisible()),
    'with OneOffice-Key: test, read-only the page shows TEST and no replay button');
  check(await page.locator('#mode').textContent() === 'LIVE', 'without the header the page shows LIVE');

  check(problems.length === 0, 'no dialog, page error or console error: ' + problems.join('; '));
} finally {
  await browser.close();
  receiver.close();
}
console.error(`console-test: all ${checks} checks passed; screenshots in bin/console-{requests,request,events}.png`);
