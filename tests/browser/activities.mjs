// Activities in a real browser: on a deal's page add a note and a task from the timeline's
// composer (no page reload), find the task on the tasks page, complete it there, and see the
// completion in the deal's timeline. Screenshots of the timeline and the tasks page. Run by
// app/tests/it/browser.rs against a server with its workers, on an account with one deal.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('BASE_URL');
const dealUrl = env('DEAL_URL');
const shots = env('SCREENSHOTS');
const shot = (page, name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = async (page, what) => {
  await shot(page, 'activities-failure.png');
  throw new Error(`${what} (at ${page.url()})`);
};

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/sign-in`);
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

  await page.goto(dealUrl);
  // The deal's creation reached the log through the bus: the timeline shows it.
  for (let i = 0; i < 50 && !(await page.locator('[data-test=item-event]').count()); i++) {
    await page.waitForTimeout(200);
    await page.goto(dealUrl);
  }
  if (!(await page.locator('[data-test=item-event]').count())) await fail(page, 'the deal creation should be in the timeline');

  // A note, without a page reload (the URL stays, the feed grows).
  const marker = await page.evaluate(() => { window.__noReload = true; return true; });
  await page.fill('[data-test=note-text]', 'The buyer wants delivery in May');
  await page.click('[data-test=add-note]');
  await page.locator('[data-test=item-note]', { hasText: 'delivery in May' }).waitFor();
  if (!(await page.evaluate(() => window.__noReload === true)) || !marker) await fail(page, 'the note should come without a reload');

  // A task for tomorrow.
  await page.click('[data-test=task-composer]');
  await page.fill('[data-test=task-text]', 'Send the contract draft');
  await page.click('[data-test=add-task]');
  await page.locator('[data-test=item-task]', { hasText: 'Send the contract draft' }).waitFor();
  await shot(page, '40-deal-timeline.png');

  // On the tasks page, under Tomorrow; complete it there.
  await page.click('[data-test=nav-tasks]');
  await page.waitForURL(/\/tasks/);
  const tomorrow = page.locator('[data-test="group-tasks.tomorrow"]');
  if (!(await tomorrow.textContent()).includes('Send the contract draft')) await fail(page, 'the task should be due tomorrow');
  await shot(page, '41-tasks-page.png');
  const row = tomorrow.locator('[data-test=task]', { hasText: 'Send the contract draft' });
  await row.locator('input[name=result]').fill('Sent by e-mail');
  await Promise.all([page.waitForURL(/done=tasks\.saved/), row.locator('[data-test=complete]').click()]);
  if ((await page.locator('main').textContent()).includes('Send the contract draft')) await fail(page, 'a completed task leaves the open list');

  // Back on the deal: the task is done, with its result.
  await page.goto(dealUrl);
  const done = page.locator('[data-test=item-task]', { hasText: 'Send the contract draft' });
  await done.waitFor();
  const text = await done.textContent();
  if (!text.includes('Sent by e-mail') || !(await done.getAttribute('class')).includes('done')) await fail(page, `the completion should show in the timeline: ${text}`);
  await shot(page, '42-timeline-completed.png');
  console.log('activities flow done');
} finally {
  await browser.close();
}
