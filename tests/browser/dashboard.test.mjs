// The admin dashboard end to end: the real `sluice demo` binary, Debian's headless Chromium
// driven by playwright-core, every page walked as an operator would, and a screenshot of each
// saved to docs/screenshots/.
//
//   cargo build -p sluice-cli && (cd tests/browser && npm ci && npm test)
//
// SLUICE_BIN names the binary (default: $CARGO_TARGET_DIR or ./target, then debug/sluice);
// CHROMIUM the browser (default /usr/bin/chromium). No browser is ever downloaded. `cargo test
// --workspace` runs this suite too (tests/e2e/browser.rs), saving its screenshots elsewhere.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const sluiceBin = process.env.SLUICE_BIN || path.join(targetDir, 'debug', 'sluice');
// The README shows docs/screenshots/; `cargo test` points SCREENSHOTS_DIR at a scratch directory.
const shots = process.env.SCREENSHOTS_DIR || path.join(root, 'docs', 'screenshots');
const TOKEN = 'browser-test-token-0123456789abcdef';
const STARTUP_MS = 120_000;

let demo, browser, page, api, admin, dataDir;

/** Polls `check` until it returns a truthy value or the deadline passes. */
async function eventually(what, check, ms = 20_000, every = 250) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, every));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** Starts `sluice demo` on free ports and reads its addresses from the banner. */
function startDemo() {
  dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-browser-'));
  const proc = spawn(
    sluiceBin,
    ['demo', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--workers', '3', '--data-dir', path.join(dataDir, 'data')],
    { env: { ...process.env, SLUICE_ADMIN_TOKEN: TOKEN, RUST_LOG: process.env.RUST_LOG || 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sluice demo printed no banner in time\n${out}\n${err}`)), STARTUP_MS);
    proc.on('exit', (code) => reject(new Error(`sluice demo exited with ${code}\n${out}\n${err}`)));
    proc.stdout.on('data', (d) => {
      out += d;
      if (!out.includes('Ctrl-C stops it.')) return;
      clearTimeout(timer);
      // The first word after the label: `Dashboard      http://127.0.0.1:PORT/  (log in …)`.
      const value = (label) => out.split('\n').map((l) => l.trim()).find((l) => l.startsWith(label))
        ?.slice(label.length).trim().split(/\s+/)[0];
      const apiUrl = value('OpenAI API')?.replace(/\/v1$/, '');
      const adminUrl = value('Dashboard')?.replace(/\/$/, '') || value('Metrics')?.replace(/\/metrics$/, '');
      if (!apiUrl || !adminUrl) return reject(new Error(`cannot read the addresses from the banner:\n${out}`));
      resolve({ proc, api: apiUrl, admin: adminUrl });
    });
  });
}

async function shot(name, fullPage = true) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage });
}

before(async () => {
  assert.ok(existsSync(sluiceBin), `${sluiceBin} does not exist: run \`cargo build -p sluice-cli\` first or set SLUICE_BIN`);
  mkdirSync(shots, { recursive: true });
  ({ proc: demo, api, admin } = await startDemo());
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.on('console', (m) => { if (m.type() === 'error') console.error('console:', m.text()); });
});

after(async () => {
  await browser?.close();
  if (demo && demo.exitCode === null) {
    demo.kill('SIGTERM');
    await new Promise((r) => { demo.once('exit', r); setTimeout(r, 10_000); });
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('the dashboard, page by page', async (t) => {
  await t.test('serves the app and asks for the token; a wrong token shows the API error', async () => {
    await page.goto(`${admin}/`);
    await page.waitForSelector('input[name=token]');
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    const error = await page.waitForSelector('.login .error');
    assert.match(await error.textContent(), /wrong admin token/i);
    await shot('login');
  });

  await t.test('logs in and shows live numbers that change', async () => {
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-metric=requests]', { timeout: 30_000 });
    const read = () => page.textContent('[data-metric=tokens-out]');
    const first = await read();
    await eventually('the live numbers to change', async () => (await read()) !== first, 30_000);
    // The demo's clients send a third of their requests whole: the attainment judges the streams
    // (TTFT and TPOT targets describe streams) and says so beside the figure.
    const coverage = await eventually('the SLO attainment to say which requests it covers', async () => {
      const text = await page.textContent('[data-metric=attainment-coverage-demo]');
      return /^streamed requests only: [\d,]+ of [\d,]+$/.test(text?.trim()) && text.trim();
    }, 30_000);
    const [judged, of] = coverage.match(/[\d,]+/g).map((n) => Number(n.replaceAll(',', '')));
    assert.ok(judged < of, coverage);
    // Traffic by API beside tenants and models: the demo's clients use chat completions.
    await page.waitForSelector('[data-breakdown=api] h2:text-is("By API")');
    await page.waitForSelector('[data-breakdown=api] tr[data-slice=chat]', { timeout: 30_000 });
    // A few seconds of history, so the charts have lines in the screenshot.
    await eventually('a worker grid', async () => (await page.$$('.worker')).length >= 3);
    await page.waitForTimeout(4000);
    await shot('live');
  });

  let key;
  await t.test('creates a tenant and issues a key through the UI', async () => {
    await page.click('nav >> text=Tenants');
    await page.waitForSelector('input[name=tenant-name]');
    await page.fill('input[name=tenant-name]', 'Not Valid');
    await page.click('form.inline button[type=submit]');
    assert.match(await (await page.waitForSelector('.error')).textContent(), /name/);
    await page.fill('input[name=tenant-name]', 'browser-test');
    await page.click('form.inline button[type=submit]');
    await page.waitForSelector('tr[data-tenant="browser-test"]');
    await shot('tenants');
    await page.click('tr[data-tenant="browser-test"] a');
    await page.waitForSelector('input[name=key-name]');
    await page.fill('input[name=key-name]', 'browser');
    await page.click('text=Issue key');
    key = (await (await page.waitForSelector('[data-secret=key]')).textContent()).trim();
    assert.ok(key.length > 20, `a key secret, got ${key}`);
    await shot('tenant');
  });

  await t.test('the new key serves a chat completion', async () => {
    const reply = await eventually('the gateway to accept the new key', async () => {
      const r = await fetch(`${api}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'llama-3-8b', max_tokens: 8, messages: [{ role: 'user', content: 'Hello!' }] }),
      });
      return r.status === 200 ? r.json() : null;
    }, 20_000, 500);
    assert.equal(reply.object, 'chat.completion');
    assert.ok(reply.choices[0].message.content.length > 0);
  });

  await t.test("shows a tenant's use against its limits, and 429s on its page and in the list", async () => {
    await page.click('nav >> text=Tenants');
    await page.waitForSelector('tr[data-tenant="browser-test"] td[data-col=rejected]');
    const headers = await page.$$eval('table thead th', (ths) => ths.map((th) => th.textContent.trim()));
    assert.ok(headers.includes('429/s'), `a 429/s column in the tenants list, got ${headers.join(' | ')}`);
    await page.click('tr[data-tenant="browser-test"] a');
    const use = 'section[data-section=use]';
    const cell = async (row, col) => (await page.textContent(`${use} tr[data-limit=${row}] [data-${col}]`)).trim();
    await page.waitForSelector(`${use} tr[data-limit=rpm] [data-value]`);
    for (const row of ['rpm', 'tpm', 'concurrency', 'budget']) assert.equal(await cell(row, 'value'), 'unlimited', row);

    // One request a minute: the key has used it (the previous step), so what it sends next is refused.
    await page.fill('input[name=rpm]', '1');
    await page.fill('input[name=tpm]', '100000');
    await page.fill('input[name=concurrency]', '4');
    await page.fill('input[name=budget]', '1000000');
    await page.click('button:text-is("Save limits")');
    await eventually('the saved limits in "Use against limits"', async () => (await cell('rpm', 'value')) === '1');
    assert.equal(await cell('tpm', 'value'), '100,000');
    assert.equal(await cell('concurrency', 'value'), '4');
    assert.equal(await cell('budget', 'value'), '1,000,000');
    assert.match(await cell('concurrency', 'now'), /not measured per tenant/);
    // The chat completion counts against the month's budget once the gateway has flushed its
    // usage (every 5 s) and the page has fetched it again (every 10 s).
    const tokens = await eventually('this month\'s tokens on the tenant page', async () =>
      Number(await page.getAttribute(`${use} tr[data-limit=budget] [data-now]`, 'data-tokens')), 45_000, 500);
    assert.equal(await cell('budget', 'now'), tokens.toLocaleString('en-US'));
    assert.match(await page.textContent(`${use} tr[data-limit=budget] [data-share]`), /^\d+(\.\d+)?%$/);

    // Keep sending over the limit while looking, so that every live frame has refusals in it.
    const statuses = [];
    let sending = true;
    const sender = (async () => {
      while (sending) {
        try {
          const r = await fetch(`${api}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'llama-3-8b', max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }] }),
          });
          statuses.push(r.status);
          await r.arrayBuffer();
        } catch (e) {
          statuses.push(e.message);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const busy = (text) => text !== '' && text !== '–' && text !== '0/s';
    try {
      await eventually('429s on the tenant page', async () =>
        busy((await page.textContent(`${use} tr[data-metric=rejected] [data-now]`)).trim()), 30_000);
      await page.click('nav >> text=Tenants');
      await eventually('429s in the tenants list', async () =>
        busy((await page.textContent('tr[data-tenant="browser-test"] td[data-col=rejected]')).trim()), 30_000);
    } finally {
      sending = false;
      await sender;
    }
    assert.ok(statuses.includes(429), `the gateway refused requests over the limit, got ${statuses.join(',')}`);
  });

  await t.test('uploads and activates a plugin', async () => {
    const wasm = findPluginComponent();
    await page.click('nav >> text=Plugins');
    await page.waitForSelector('input[name=plugin-name]');
    await page.fill('input[name=plugin-name]', 'browser-plugin');
    await page.setInputFiles('input[name=plugin-file]', wasm);
    await page.click('form:has(input[name=plugin-file]) button[type=submit]');
    await page.waitForSelector('section[data-plugin="browser-plugin"] tr[data-version="1"]');
    // The button: the row also says "never activated", which a text selector would match.
    await page.click('section[data-plugin="browser-plugin"] tr[data-version="1"] button:text-is("Activate")');
    await page.waitForSelector('section[data-plugin="browser-plugin"] [data-active-version="1"]');
    await shot('plugins');
  });

  await t.test('drains a worker and sees it drained', async () => {
    await page.click('nav >> text=Pools');
    const row = 'section[data-pool] tr[data-endpoint]';
    await page.waitForSelector(row);
    const name = await page.getAttribute(row, 'data-endpoint');
    await page.click(`tr[data-endpoint="${name}"] >> text=Drain`);
    await page.waitForSelector(`tr[data-endpoint="${name}"] [data-drained=true]`);
    // The gateway applies it: the live stream reports the worker drained.
    await eventually('the live state to say drained', async () =>
      /drained/.test(await page.textContent(`tr[data-endpoint="${name}"] .live-state`)), 20_000);
    await shot('pools');
    await page.click('nav >> text=Live');
    await page.waitForSelector(`.worker.drained[data-worker="${name}"]`);
  });

  await t.test("shows the response cache's hits by tenant, live and on the tenant's page", async () => {
    // The demo binds the built-in cache plugin, and a quarter of its clients' requests are
    // deterministic: twelve questions, asked again and again, answered from the cache.
    await page.click('nav >> text=Live');
    const headers = await page.$$eval('table thead th', (ths) => ths.map((th) => th.textContent.trim()));
    assert.ok(headers.includes('cache hits'), `a cache hits column, got ${headers.join(' | ')}`);
    await eventually('a hit ratio for the demo tenant in the live view', async () =>
      /^\d+(\.\d+)?%$/.test((await page.textContent('td[data-cache-hits="demo"]'))?.trim()), 90_000, 500);
    await page.click('nav >> text=Tenants');
    await page.click('tr[data-tenant="demo"] a');
    const cache = 'section[data-section=cache]';
    await page.waitForSelector(`${cache} [data-cache-state=active]`, { timeout: 30_000 });
    const count = async (row) =>
      Number((await page.textContent(`${cache} tr[data-cache=${row}] [data-window]`)).trim().replaceAll(',', ''));
    await eventually('cache hits in the last minute on the tenant page', async () => (await count('hits')) > 0, 60_000, 500);
    assert.ok(await count('misses') > 0, 'misses in the last minute');
    assert.ok(await count('saved-tokens') > 0, 'tokens saved in the last minute');
    assert.match((await page.textContent(`${cache} [data-hit-ratio]`)).trim(), /^\d+(\.\d+)?%$/);
    await shot('tenant-cache');
  });

  await t.test('usage and audit pages', async () => {
    await page.click('nav >> text=Usage');
    await page.waitForSelector('text=Download CSV', { timeout: 30_000 });
    await shot('usage');
    await page.click('nav >> text=Audit log');
    await page.waitForSelector('text=tenant.create');
    await shot('audit');
  });

  await t.test('logging out forgets the token', async () => {
    await page.click('text=Log out');
    await page.waitForSelector('input[name=token]');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await page.reload();
    await page.waitForSelector('input[name=token]');
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await page.waitForSelector('button.logout');
  });

  await t.test('says so when the live stream drops', async () => {
    await page.click('nav >> text=Live');
    await page.waitForSelector('[data-metric=requests]');
    demo.kill('SIGKILL');
    const banner = await page.waitForSelector('.banner', { timeout: 20_000 });
    assert.match(await banner.textContent(), /disconnected.*reconnecting/i);
  });
});

/** A component the plugin host accepts: the built-in router the gateway's build produced. */
function findPluginComponent() {
  if (process.env.PLUGIN_WASM) return process.env.PLUGIN_WASM;
  for (const profile of ['debug', 'release']) {
    const build = path.join(targetDir, profile, 'build');
    if (!existsSync(build)) continue;
    for (const dir of readdirSync(build).filter((d) => d.startsWith('sluice-plugin-host-'))) {
      const file = path.join(build, dir, 'out', 'router.wasm');
      if (existsSync(file)) return file;
    }
  }
  throw new Error(`no router.wasm under ${targetDir}/*/build/sluice-plugin-host-*/out; set PLUGIN_WASM`);
}
