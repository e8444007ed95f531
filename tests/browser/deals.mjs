// The deals flow in a real browser: create a pipeline and stages, add deals from the board,
// drag one to another stage and reorder within a stage (persisted after reload), close one as
// lost with a reason, edit on the deal page, bulk-move from the list. Screenshots along the way.
// Run by app/tests/it/browser.rs with BASE_URL, ADMIN_EMAIL, ADMIN_PASSWORD, CHROMIUM, SCREENSHOTS.
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
  await shot(page, 'deals-failure.png');
  throw new Error(`${what} (at ${page.url()})`);
};
const column = (page, name) =>
  page.locator('section.column', { has: page.locator('.stage-name', { hasText: name }) });
const cardsIn = async (page, name) =>
  column(page, name).locator('.card .card-name').allTextContents();

// Drags with the mouse, in small steps, as a person would.
async function drag(page, from, to, { below = false } = {}) {
  const a = await from.boundingBox();
  const b = await to.boundingBox();
  await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
  await page.mouse.down();
  await page.mouse.move(a.x + a.width / 2 + 5, a.y + a.height / 2 + 5, { steps: 5 });
  const y = below ? b.y + b.height - 3 : b.y + b.height / 2;
  await page.mouse.move(b.x + b.width / 2, y, { steps: 20 });
  await page.mouse.up();
}

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(15000);
  page.on('dialog', (d) => d.accept());

  await page.goto(`${base}/sign-in`);
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

  // A pipeline with three stages, one more added, and a loss reason.
  await page.goto(`${base}/settings/pipelines`);
  await page.fill('input[name=name][aria-invalid]', 'Wholesale');
  await page.fill('textarea[name=stages]', 'Qualified\nProposal\nContract');
  await Promise.all([page.waitForURL(/done=pipelines\.created/), page.click('button:has-text("Create pipeline")')]);
  const panel = page.locator('[data-test=pipeline]', { hasText: 'Wholesale' });
  await panel.locator('input[name=name][placeholder="New stage"]').fill('Negotiation');
  await Promise.all([page.waitForURL(/done=pipelines\.saved/), panel.locator('button:has-text("Add stage")').click()]);
  await page.fill('input[placeholder="New loss reason"]', 'Too expensive');
  await Promise.all([page.waitForURL(/done=pipelines\.saved/), page.click('button:has-text("Add reason")')]);
  await shot(page, '10-pipelines-settings.png');

  // The board: three deals added from the top of the first column.
  await Promise.all([page.waitForURL(/\/deals\/pipelines\/\d+$/), panel.locator('h2 a').click()]);
  const board = page.url();
  for (const [name, price] of [['Acme order', '120000'], ['Globex pilot', '45000'], ['Initech renewal', '80000']]) {
    const col = column(page, 'Qualified');
    await col.locator('input[name=name]').fill(name);
    await col.locator('input[name=price]').fill(price);
    await Promise.all([page.waitForURL(/done=deals\.created/), col.locator('button[type=submit]').click()]);
  }
  let names = await cardsIn(page, 'Qualified');
  if (names.join('|') !== 'Initech renewal|Globex pilot|Acme order') await fail(page, `new deals go on top: ${names}`);
  if (!(await column(page, 'Qualified').locator('[data-test=totals]').textContent()).startsWith('3 ·')) await fail(page, 'three deals counted');

  // Drag "Acme order" to "Proposal": the totals change without a reload, and it stays there.
  const card = (name) => page.locator('.card', { hasText: name });
  let moved = page.waitForResponse((r) => r.url().includes('/move') && r.request().method() === 'POST');
  await drag(page, card('Acme order'), column(page, 'Proposal').locator('.cards'));
  if ((await moved).status() !== 200) await fail(page, 'the move was refused');
  await page.waitForFunction(() => document.querySelector('section.column:nth-child(3) [data-test=totals]').textContent.startsWith('1 ·'));
  await page.goto(board);
  names = await cardsIn(page, 'Proposal');
  if (names.join('|') !== 'Acme order') await fail(page, `Acme order should be in Proposal after reload: ${names}`);

  // Reorder within "Qualified": Initech goes below Globex.
  moved = page.waitForResponse((r) => r.url().includes('/move'));
  await drag(page, card('Initech renewal'), card('Globex pilot'), { below: true });
  if ((await moved).status() !== 200) await fail(page, 'the reorder was refused');
  await page.goto(board);
  names = await cardsIn(page, 'Qualified');
  if (names.join('|') !== 'Globex pilot|Initech renewal') await fail(page, `the order should persist: ${names}`);

  // Close "Globex pilot" as lost: the reason is asked for.
  await drag(page, card('Globex pilot'), page.locator('[data-test=zone-lost] .cards'));
  const dialog = page.locator('[data-test=loss-dialog]');
  await dialog.waitFor({ state: 'visible' });
  await dialog.locator('select').selectOption({ label: 'Too expensive' });
  await shot(page, '11-loss-reason.png');
  moved = page.waitForResponse((r) => r.url().includes('/move'));
  await dialog.locator('button[value=ok]').click();
  if ((await moved).status() !== 200) await fail(page, 'closing as lost was refused');
  await page.waitForFunction(() => !document.querySelector('[data-test=zone-lost] .card'));
  await page.goto(board);
  if ((await cardsIn(page, 'Qualified')).includes('Globex pilot')) await fail(page, 'a lost deal leaves the board');
  if (!(await page.locator('[data-test=zone-lost]').textContent()).includes('1 ·')) await fail(page, 'the lost zone counts it');
  await shot(page, '12-board.png');

  // The deal page: edit the budget in place (saved on change), see the stage history.
  await Promise.all([page.waitForURL(/\/deals\/\d+$/), card('Acme order').locator('a').click()]);
  const dealUrl = page.url();
  const saved = page.waitForResponse((r) => r.url() === dealUrl && r.request().method() === 'POST');
  await page.fill('input[name=price]', '150000');
  await page.locator('input[name=price]').dispatchEvent('change');
  if ((await saved).status() !== 200) await fail(page, 'the in-place edit failed');
  await page.goto(dealUrl);
  if ((await page.inputValue('input[name=price]')) !== '150000') await fail(page, 'the budget should be saved');
  if ((await page.locator('[data-test=history] tbody tr').count()) !== 2) await fail(page, 'two stays in the history');
  await shot(page, '13-deal-page.png');

  // The list: bulk-move two deals to "Contract".
  await page.goto(board);
  await Promise.all([page.waitForURL(/\/deals\/list/), page.click('[data-test=list-view]')]);
  await page.locator('tr', { hasText: 'Acme order' }).locator('input[type=checkbox]').check();
  await page.locator('tr', { hasText: 'Initech renewal' }).locator('input[type=checkbox]').check();
  await page.selectOption('select[name=action]', 'move');
  await page.selectOption('select[name=stage_id]', { label: 'Contract' });
  await shot(page, '14-list-bulk.png');
  await Promise.all([page.waitForURL(/done=deals\.bulk_done/), page.click('button:has-text("Apply to selected")')]);
  await page.goto(board);
  names = await cardsIn(page, 'Contract');
  if (names.length !== 2) await fail(page, `two deals in Contract after the bulk move: ${names}`);
  console.log('deals flow done');
} finally {
  await browser.close();
}
