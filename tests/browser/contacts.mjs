// Contacts in a real browser: create a contact and a company and link them, find the contact by
// a phone typed another way, get the duplicate warning for a second contact with the same phone,
// and merge the two. Screenshots along the way. Run by app/tests/it/browser.rs.
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
  await shot(page, 'contacts-failure.png');
  throw new Error(`${what} (at ${page.url()})`);
};

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/sign-in`);
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

  // A company, then a contact.
  await page.goto(`${base}/companies/new`);
  await page.fill('input[name=name]', 'Northwind Trading');
  await page.fill('input[name=web]', 'https://northwind.example');
  await Promise.all([page.waitForURL(/\/companies\/\d+\?done=contacts\.created/), page.click('[data-test=save]')]);

  await page.goto(`${base}/contacts`);
  await Promise.all([page.waitForURL(/\/contacts\/new/), page.click('[data-test=new]')]);
  await page.fill('input[name=first_name]', 'Anna');
  await page.fill('input[name=last_name]', 'Petrova');
  await page.fill('input[name=phone]', '+7 (916) 123-45-67');
  await page.fill('input[name=email]', 'anna.petrova@example.com');
  await page.selectOption('select[name=phone_kind]', 'MOB');
  await shot(page, '20-new-contact.png');
  await Promise.all([page.waitForURL(/\/contacts\/\d+\?done=contacts\.created/), page.click('[data-test=save]')]);
  const annaUrl = page.url().split('?')[0];

  // Link the contact to the company from its page.
  await page.selectOption('select[name=company_id]', { label: 'Northwind Trading' });
  await Promise.all([page.waitForURL(/done=contacts\.saved/), page.click('button:has-text("Link")')]);
  if (!(await page.locator('[data-test=links]').textContent()).includes('Northwind Trading')) await fail(page, 'the company should be linked');

  // Found by the phone typed the national way.
  await page.goto(`${base}/contacts`);
  await page.fill('[data-test=search]', '8 916 123 45 67');
  await Promise.all([page.waitForURL(/q=/), page.press('[data-test=search]', 'Enter')]);
  if (!(await page.locator('[data-test=hits]').textContent()).includes('Anna Petrova')) await fail(page, 'the phone search should find Anna');
  await shot(page, '21-search-by-phone.png');

  // A second contact with the same phone: the warning names Anna; create anyway.
  await page.goto(`${base}/contacts/new`);
  await page.fill('input[name=first_name]', 'Anya');
  await page.fill('input[name=phone]', '89161234567');
  await page.fill('input[name=email]', 'anya@home.example');
  await page.click('[data-test=save]');
  await page.locator('[data-test=duplicates]').waitFor();
  if (!(await page.locator('[data-test=duplicates]').textContent()).includes('Anna Petrova')) await fail(page, 'the duplicate warning should name Anna');
  await shot(page, '22-duplicate-warning.png');
  await Promise.all([page.waitForURL(/\/contacts\/\d+\?done=contacts\.created/), page.click('[data-test=save]')]);

  // Merge Anya into Anna from Anna's page.
  await page.goto(annaUrl);
  const dups = page.locator('[data-test=possible-duplicates]');
  await dups.locator('label', { hasText: 'Anya' }).locator('input[type=checkbox]').check();
  await shot(page, '23-contact-page.png');
  await Promise.all([page.waitForURL(/done=contacts\.merged/), dups.locator('[data-test=merge]').click()]);
  const text = await page.textContent('main');
  if (!text.includes('anya@home.example')) await fail(page, "Anya's e-mail should now be Anna's");
  if (await page.locator('[data-test=possible-duplicates]').count() !== 0) await fail(page, 'no duplicates left');
  await shot(page, '24-merged.png');
  console.log('contacts flow done');
} finally {
  await browser.close();
}
