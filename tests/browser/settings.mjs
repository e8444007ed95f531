// Signs in, opens settings, creates a user, signs in as that user; screenshots along the way.
// Run by the Rust test app/tests/it/browser.rs with BASE_URL, ADMIN_EMAIL, ADMIN_PASSWORD,
// CHROMIUM (Debian's /usr/bin/chromium) and SCREENSHOTS set.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('BASE_URL');
const shots = env('SCREENSHOTS');

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = async (page, what) => {
  await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true });
  throw new Error(`${what} (at ${page.url()})`);
};

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(15000);

  await page.goto(`${base}/settings/users`);
  if (!page.url().includes('/sign-in')) await fail(page, 'a visitor should be sent to sign in');
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await page.screenshot({ path: path.join(shots, '01-sign-in.png') });
  await Promise.all([page.waitForURL(`${base}/settings/users`), page.click('button[type=submit]')]);
  await page.screenshot({ path: path.join(shots, '02-settings-users.png'), fullPage: true });

  await page.click('[data-test=add-user]');
  await page.waitForURL(`${base}/settings/users/new`);
  await page.fill('#name', 'Olga Ivanova');
  await page.fill('#email', 'olga@browser.test');
  await page.fill('#password', 'olga-secret-1');
  await page.selectOption('#lang', 'ru');
  await page.selectOption('#time_zone', 'Europe/Moscow');
  await page.screenshot({ path: path.join(shots, '03-new-user-form.png'), fullPage: true });
  await Promise.all([page.waitForURL(/\/settings\/users\?done=users\.created$/), page.click('[data-test=save-user]')]);
  if (!(await page.getByText('User created.').isVisible())) await fail(page, 'no confirmation after creating the user');
  if (!(await page.getByText('olga@browser.test').isVisible())) await fail(page, 'the new user is not listed');
  await page.screenshot({ path: path.join(shots, '04-user-created.png'), fullPage: true });

  await Promise.all([page.waitForURL(/\/sign-in/), page.click('button:has-text("Sign out")')]);
  await page.fill('#email', 'olga@browser.test');
  await page.fill('#password', 'olga-secret-1');
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
  if (!(await page.getByText('Здравствуйте, Olga Ivanova').isVisible())) await fail(page, 'the new user should see a Russian home page');
  await page.screenshot({ path: path.join(shots, '05-new-user-home.png'), fullPage: true });

  // An ordinary user is refused the users page.
  const res = await page.goto(`${base}/settings/users`);
  if (res.status() !== 403) await fail(page, `expected 403 for a non-admin, got ${res.status()}`);
  await page.screenshot({ path: path.join(shots, '06-forbidden.png') });
  console.log('signed in as the new user; screenshots in', shots);
} finally {
  await browser.close();
}
