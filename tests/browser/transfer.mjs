// Import and export in a real browser: upload a CSV with a bad row, map its columns, check it
// (dry run), import it, read the refused row in the page and in the downloaded error report,
// find the good rows in the list, then save them as a segment and export it. Screenshots along
// the way. Run by app/tests/it/browser.rs against a server with its job workers.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
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
  await shot(page, 'transfer-failure.png');
  throw new Error(`${what} (at ${page.url()})`);
};
const downloaded = async (page, click) => {
  const [download] = await Promise.all([page.waitForEvent('download'), click()]);
  return fs.readFileSync(await download.path(), 'utf8');
};

const csv = [
  'Имя;Фамилия;Телефон;Email;Теги',
  'Vera;Orlova;+7 915 100-20-30;vera@example.com;csv',
  'Bad;Phone;call me maybe;bad@example.com;csv',
  'Gleb;Nosov;8 915 200 30 40;gleb@example.com;csv',
].join('\n') + '\n';

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  page.setDefaultTimeout(20000);
  await page.goto(`${base}/sign-in`);
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

  // Upload.
  await page.goto(`${base}/contacts`);
  await Promise.all([page.waitForURL(/\/contacts\/transfer/), page.click('[data-test=transfer]')]);
  await page.setInputFiles('[data-test=file]', { name: 'clients.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  await Promise.all([page.waitForURL(/\/contacts\/import\/\d+$/), page.click('[data-test=upload-submit]')]);

  // The mapping screen guessed the Russian headers; check the file first.
  if (await page.locator('[data-test=col2]').inputValue() !== 'phone_work') await fail(page, 'Телефон should map to the work phone');
  await page.fill('[data-test=tag]', 'from-csv');
  await shot(page, '30-import-mapping.png');
  await page.click('[data-test=dry-run]');
  await page.locator('[data-test=summary]').waitFor();
  const dry = await page.locator('[data-test=summary]').textContent();
  if (!dry.includes('Would create: 2') || !dry.includes('Refused: 1')) await fail(page, `the dry run should count 2 new and 1 refused: ${dry}`);
  await shot(page, '31-import-dry-run.png');

  // Import for real.
  await page.click('[data-test=run]');
  await page.waitForFunction(() => document.querySelector('[data-test=summary] h2')?.textContent.includes('Import finished'));
  const summary = await page.locator('[data-test=summary]').textContent();
  if (!summary.includes('Created: 2') || !summary.includes('Refused: 1')) await fail(page, `the import should create 2 and refuse 1: ${summary}`);
  const errorsTable = await page.locator('[data-test=row-errors]').textContent();
  if (!errorsTable.includes('call me maybe') || !errorsTable.includes('Телефон')) await fail(page, 'the refused row should be named with its column and value');
  await shot(page, '32-import-done.png');
  const report = await downloaded(page, () => page.click('[data-test=error-report]'));
  if (!/^\uFEFF?row,column,value,reason/.test(report) || !report.includes('3,Телефон,call me maybe,')) await fail(page, `the error report should name row 3: ${report}`);

  // The good rows are in.
  await page.goto(`${base}/contacts`);
  const list = await page.locator('[data-test=rows]').textContent();
  if (!list.includes('Vera Orlova') || !list.includes('Gleb Nosov') || list.includes('Bad Phone')) await fail(page, 'the list should hold the two good rows only');

  // A segment of them (tag from-csv), exported.
  await page.selectOption('[data-test=contact-filter] select[name=tag]', { label: 'from-csv' });
  await Promise.all([page.waitForURL(/tag=/), page.click('[data-test=contact-filter] button[type=submit]')]);
  await page.fill('input[name=name]', 'Imported from CSV');
  await Promise.all([page.waitForURL(/segment=\d+/), page.click('button:has-text("Save as a segment")')]);
  await shot(page, '33-segment.png');
  await Promise.all([page.waitForURL(/\/contacts\/transfer\?done=import\.export_queued/), page.click('[data-test=export] button[type=submit]')]);
  await page.locator('[data-test=download]').first().waitFor();
  await shot(page, '34-export-ready.png');
  const exported = await downloaded(page, () => page.locator('[data-test=download]').first().click());
  if (!exported.includes('Vera Orlova') || !exported.includes('Gleb Nosov') || !exported.includes('vera@example.com')) await fail(page, `the export should hold the segment: ${exported}`);
  console.log('transfer flow done');
} finally {
  await browser.close();
}
