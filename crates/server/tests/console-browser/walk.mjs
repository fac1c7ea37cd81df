// Walks the kmipd admin console in Debian's chromium (headless) through playwright-core, with
// client certificates for mutual TLS (Playwright's clientCertificates option). Run by
// crates/server/tests/console_browser.rs, which starts kmipd and passes everything in the
// environment; exits non-zero with a one-line reason on the first failed check.
//
// KMIPD_CONSOLE_URL  https://127.0.0.1:PORT
// KMIPD_CHROMIUM     the chromium executable
// KMIPD_CERTS        the directory of <name>.pem / <name>.key (operator, auditor, client)
// KMIPD_KEY_UID      a Pre-Active key the operator activates, then revokes
// KMIPD_SHOTS        where the screenshots go
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env('KMIPD_CONSOLE_URL');
const certs = env('KMIPD_CERTS');
const uid = env('KMIPD_KEY_UID');
const shots = env('KMIPD_SHOTS');
mkdirSync(shots, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const browser = await chromium.launch({
  executablePath: env('KMIPD_CHROMIUM'),
  headless: true,
  // Playwright gives each launch a fresh temporary profile (its own --user-data-dir).
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  timeout: 60_000,
});

async function as(who) {
  const context = await browser.newContext({
    // The console's server certificate is the dev CA's; what is tested here is the client side.
    ignoreHTTPSErrors: true,
    clientCertificates: [
      { origin: url, certPath: join(certs, `${who}.pem`), keyPath: join(certs, `${who}.key`) },
    ],
    viewport: { width: 1280, height: 800 },
  });
  context.setDefaultTimeout(30_000);
  const page = await context.newPage();
  current = page;
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  console.log(`screenshot: ${name}.png`);
}

let failed = null;
// The page in use, for a screenshot of where a check failed.
let current = null;
try {
  // A plain client certificate: 403.
  {
    const { context, page } = await as('client');
    const r = await page.goto(`${url}/`);
    check(r.status() === 403, `plain client certificate gets 403 (got ${r.status()})`);
    check((await page.textContent('main')).includes('no console role'), 'the 403 page says why');
    await shot(page, 'forbidden');
    await context.close();
  }

  // The operator walks every page and activates, then revokes the key with confirmation.
  {
    const { context, page } = await as('operator');
    let r = await page.goto(`${url}/`);
    check(r.status() === 200, 'operator: health page 200');
    check((await page.textContent('h1')) === 'Health', 'health page title');
    check((await page.textContent('main')).includes('kmipd '), 'health page shows the version');
    await shot(page, 'health');

    await page.click('nav >> text=Keys');
    check((await page.textContent('h1')) === 'Keys', 'keys page by the navigation');
    await page.fill('input[name=q]', 'browser-demo');
    await page.selectOption('select[name=type]', 'SymmetricKey');
    await page.click('form.filters button');
    check(page.url().includes('q=browser-demo'), 'the search is in the URL');
    const rows = await page.locator('#inventory tr').count();
    check(rows === 2, `the search finds the one key (rows ${rows})`);
    await shot(page, 'keys');

    await page.click(`#inventory a:text("${uid}")`);
    check((await page.textContent('h1')) === 'Object', 'object page');
    check((await page.textContent('#attributes')).includes('PreActive'), 'object is Pre-Active');
    await shot(page, 'object');

    await page.click('a.button:text("activate…")');
    check((await page.textContent('h1')) === 'Activate?', 'activation asks for confirmation');
    await page.click('#confirm button[type=submit]');
    check((await page.textContent('#outcome')).includes('Activate: done.'), 'activated');
    await page.click('text=back to the object');
    const attrs = await page.textContent('#attributes');
    check(attrs.includes('Active') && !attrs.includes('PreActive'), 'object is Active');

    await page.click('a.button:text("revoke…")');
    check((await page.textContent('h1')) === 'Revoke?', 'revocation asks for confirmation');
    await page.selectOption('select[name=reason]', 'superseded');
    await shot(page, 'confirm-revoke');
    r = await Promise.all([page.waitForNavigation(), page.click('#confirm button[type=submit]')]);
    check(r[0].status() === 200, 'the revoke POST is answered 200');
    check((await page.textContent('#outcome')).includes('Revoke: done.'), 'revoked');
    await shot(page, 'revoked');
    await page.click('text=back to the object');
    check((await page.textContent('#attributes')).includes('Deactivated'), 'object is Deactivated');
    check((await page.textContent('table.audit')).includes('Revoke'), 'its history shows the Revoke');

    await page.click('nav >> text=Clients');
    check((await page.textContent('h1')) === 'Clients', 'clients page');
    check((await page.textContent('#identities')).includes('operator'), 'the operator is among the identities seen');
    await shot(page, 'clients');

    await page.click('nav >> text=Audit');
    await page.fill('input[name=operation]', 'Revoke');
    await page.click('form.filters button');
    const audit = await page.textContent('main');
    check(audit.includes('chain intact'), 'audit chain intact');
    check(audit.includes('operator') && audit.includes(uid), 'the audit trail shows the operator revoking the key');
    await shot(page, 'audit');
    await context.close();
  }

  // The auditor sees the object but is offered no action, and cannot act.
  {
    const { context, page } = await as('auditor');
    let r = await page.goto(`${url}/keys/show?uid=${encodeURIComponent(uid)}`);
    check(r.status() === 200, 'auditor: object page 200');
    check((await page.locator('a.button').count()) === 0, 'auditor: no action buttons');
    await shot(page, 'auditor-object');
    r = await page.goto(`${url}/keys/confirm?uid=${encodeURIComponent(uid)}&action=destroy`);
    check(r.status() === 403, 'auditor: confirmation page refused 403');
    const forged = await context.request.post(`${url}/keys/action`, {
      headers: { Origin: url },
      form: { uid, action: 'destroy', csrf: '0'.repeat(64), confirm: 'yes' },
    });
    check(forged.status() === 403, `auditor: forged POST refused 403 (got ${forged.status()})`);
    await context.close();
  }
} catch (e) {
  failed = e;
  if (current) {
    await current.screenshot({ path: join(shots, 'FAILED.png'), fullPage: true }).catch(() => {});
    console.error(`at ${current.url()}: ${(await current.textContent('main').catch(() => '')) ?? ''}`);
  }
} finally {
  await browser.close();
}
if (failed) {
  console.error(`console browser test: ${failed.message}`);
  process.exit(1);
}
console.log('console browser test: all checks passed');
