// Analytics in a real browser: the dashboard shows this month's figures; the manager opens the
// funnel of a pipeline with a history (9 deals created, 6 reached Proposal, 3 won, 1 lost),
// changes the period to one without deals and back, then drills down from the cohort to the
// deals list behind it. Screenshots of the dashboard and the funnel. Run by
// app/tests/it/browser.rs.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('BASE_URL');
const pipeline = env('PIPELINE_ID');
const shots = env('SCREENSHOTS');
const shot = (page, name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = async (page, what) => {
  await shot(page, 'analytics-failure.png');
  throw new Error(`${what} (at ${page.url()})`);
};
const day = (d) => d.toISOString().slice(0, 10);

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(20000);
  await page.goto(`${base}/sign-in`);
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

  await Promise.all([page.waitForURL(/\/analytics/), page.click('[data-test=nav-analytics]')]);
  const created = (await page.locator('[data-test=fig-created] .figure-value').innerText()).trim();
  if (created !== '9') await fail(page, `the dashboard counts ${created} deals created, not 9`);
  const won = (await page.locator('[data-test=fig-won] .figure-value').innerText()).trim();
  if (won !== '3') await fail(page, `the dashboard counts ${won} won, not 3`);
  if (!(await page.locator('svg.chart title').count())) await fail(page, 'no chart on the dashboard');
  await shot(page, 'analytics-dashboard.png');

  // The funnel of the pipeline: the cohort, then each stage with how many got that far.
  await Promise.all([page.waitForURL(/\/analytics\/funnel/), page.click('[data-test=tab-funnel]')]);
  await page.selectOption('select[name=pipeline]', pipeline);
  await Promise.all([page.waitForURL(/pipeline=/), page.click('[data-test=apply]')]);
  const row = (name) => page.locator('[data-test=report-table] tbody tr', { hasText: name }).first();
  const cell = async (name, i) => (await row(name).locator('td').nth(i).innerText()).trim();
  if ((await cell('Deals created', 1)) !== '9') await fail(page, 'the cohort is not 9 deals');
  if ((await cell('Proposal', 1)) !== '6') await fail(page, 'Proposal was not reached by 6');
  if ((await cell('Contract', 1)) !== '3') await fail(page, 'Contract was not reached by 3');
  const hover = await page.locator('#chart-funnel g.bar title').first().textContent();
  if (!hover.includes(':')) await fail(page, 'the funnel bars carry no values on hover');
  await shot(page, 'analytics-funnel.png');

  // A period without deals: the funnel is empty.
  await page.fill('[data-test=from]', '2020-01-01');
  await page.fill('[data-test=to]', '2020-12-31');
  await Promise.all([page.waitForURL(/from=2020-01-01/), page.click('[data-test=apply]')]);
  if ((await cell('Deals created', 1)) !== '0') await fail(page, 'deals counted in 2020');

  // The last 30 days: the deals are back; the cohort's figure leads to its deals.
  const today = new Date();
  await page.fill('[data-test=from]', day(new Date(today.getTime() - 30 * 86400000)));
  await page.fill('[data-test=to]', day(today));
  await Promise.all([page.waitForURL(new RegExp(`to=${day(today)}`)), page.click('[data-test=apply]')]);
  if ((await cell('Deals created', 1)) !== '9') await fail(page, 'the cohort did not come back');
  await Promise.all([page.waitForURL(/\/deals\/list\?/), row('Deals created').locator('a').click()]);
  await page.locator('[data-test=deals-table] tbody tr[data-deal]').first().waitFor();
  const listed = await page.locator('[data-test=deals-table] tbody tr[data-deal]').count();
  if (listed !== 9) await fail(page, `the drill-down lists ${listed} deals, not 9`);
  console.log('analytics flow done');
} finally {
  await browser.close();
}
