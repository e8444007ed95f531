// Moving off amoCRM from the settings: a wrong address is refused with a form error, then the
// import of an account (another Voronka account's amoCRM-compatible API standing in for amoCRM)
// is started, its progress bar followed to the end, its counts and skipped log read, and the
// imported records found in the lists. Run by app/tests/it/browser.rs against a server with its
// job workers.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('BASE_URL');
const shots = env('SCREENSHOTS');
const shot = (page, name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = async (page, what) => {
  await shot(page, 'import-failure.png');
  throw new Error(`${what} (at ${page.url()})`);
};

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(20000);
  await page.goto(`${base}/sign-in`);
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

  await page.goto(`${base}/settings`);
  await Promise.all([page.waitForURL(`${base}/settings/import`), page.click('nav.tabs a[href="/settings/import"]')]);
  if (!(await page.locator('#import-run').textContent()).includes('No import has been started yet')) await fail(page, 'a fresh account has no import');

  // An address that is not http(s) is refused with the field marked.
  await page.fill('#import_base_url', 'ftp://example.amocrm.ru');
  await page.fill('#import_token', 'whatever');
  await page.click('[data-test=import-form] button[type=submit]');
  await page.locator('#import_base_url[aria-invalid=true]').waitFor();
  const error = await page.locator('.field-error').first().textContent();
  if (!error.includes('https://example.amocrm.ru')) await fail(page, `the address should be refused with a hint: ${error}`);
  if (await page.locator('#import_token').inputValue() !== '') await fail(page, 'the token is never sent back to the page');
  await shot(page, '80-amocrm-import-refused.png');

  // The real one: queued, then followed to the end without reloading the page.
  await page.fill('#import_base_url', env('SOURCE_URL'));
  await page.fill('#import_token', env('SOURCE_TOKEN'));
  await Promise.all([page.waitForURL(/done=amo_import\.queued/), page.click('[data-test=import-form] button[type=submit]')]);
  await page.locator('[data-test=import-progress]').waitFor();
  await page.waitForFunction(() => document.querySelector('[data-test=import-run]')?.dataset.state === 'done', null, { timeout: 60000 });
  await shot(page, '81-amocrm-import-done.png');
  if (await page.locator('[data-test=import-progress]').getAttribute('value') !== '100') await fail(page, 'a finished import fills the bar');
  const state = await page.locator('[data-test=import-state]').textContent();
  if (state.trim() !== 'Done') await fail(page, `the state should read Done: ${state}`);
  // Cells read one by one: the table's text runs them together ("leads330").
  const rows = await page.locator('[data-test=import-counts] tr').evaluateAll(
    (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
  const leads = rows.find((r) => r[0] === 'leads');
  if (!leads || leads[1] !== '3' || leads[2] !== '3') await fail(page, `3 leads should be read and created: ${JSON.stringify(rows)}`);
  const skipped = await page.locator('[data-test=import-skipped]').textContent();
  if (!skipped.includes('events')) await fail(page, `the skipped log should say the event log stays behind: ${skipped}`);

  // The records are here.
  await page.goto(`${base}/contacts`);
  const list = await page.locator('[data-test=rows]').textContent();
  if (!list.includes('Olga Source')) await fail(page, `the imported contact should be listed: ${list}`);
  await page.goto(`${base}/deals/list`);
  const deals = await page.locator('body').textContent();
  if (!deals.includes('Imported lead 2')) await fail(page, 'the imported leads should be listed');
  console.log('amocrm import flow done');
} finally {
  await browser.close();
}
