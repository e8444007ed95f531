// Automation in a real browser: on the pipeline's automation screen add a trigger "moved to
// Proposal: immediately, create a task and send a chat message" with the trigger editor, drag the
// deal to Proposal on the board, find the robot's task in the deal's timeline and the run in its
// history, and the message at the fake Telegram (the deal's client wrote before).
// Then a bot is built in the bot editor. Screenshots of the automation screen, the trigger
// editor, the run history and the bot editor. Run by
// app/tests/it/browser.rs against a server with its workers, on an account with one deal.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('BASE_URL');
const fakeUrl = env('FAKE_URL');
const dealUrl = env('DEAL_URL');
const shots = env('SCREENSHOTS');
const shot = (page, name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = async (page, what) => {
  await shot(page, 'automation-failure.png');
  throw new Error(`${what} (at ${page.url()})`);
};

async function drag(page, from, to) {
  const a = await from.boundingBox();
  const b = await to.boundingBox();
  await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
  await page.mouse.down();
  await page.mouse.move(a.x + a.width / 2 + 5, a.y + a.height / 2 + 5, { steps: 5 });
  await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2, { steps: 20 });
  await page.mouse.up();
}

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/sign-in`);
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

  // The automation screen: a column per stage; add a trigger under Proposal.
  await page.click('[data-test=nav-automation]');
  const proposal = page.locator('[data-test=automation-board] section.column', { hasText: 'Proposal' });
  await proposal.locator('a.add-trigger').click();
  const form = page.locator('[data-test=trigger-form]');
  // A bad one first: no action is refused with a message, nothing saved.
  await form.locator('input[name=name]').fill('Call on proposal');
  await form.locator('select[name=when]').selectOption('moved_to');
  await form.locator('button[type=submit]').click();
  if (!(await page.locator('[data-test=problems] [data-field=actions]').count())) await fail(page, 'a trigger without actions was not refused');
  await form.locator('select[name=a0_kind]').selectOption('create_task');
  await form.locator('input[name=a0_text]').fill('Call about {{deal.name}}');
  await form.locator('input[name=a0_due]').fill('60');
  await form.locator('select[name=a1_kind]').selectOption('add_tags');
  await form.locator('input[name=a1_tags]').fill('proposal sent');
  await form.locator('select[name=a2_kind]').selectOption('send_message');
  await form.locator('input[name=a2_text]').fill('Your proposal for {{deal.name}} is ready');
  await shot(page, 'automation-trigger-editor.png');
  await Promise.all([page.waitForURL(/\/automation\?pipeline=/), form.locator('button[type=submit]').click()]);
  const card = page.locator('article.trigger', { hasText: 'Call on proposal' });
  if (!(await card.count())) await fail(page, 'the trigger is not on the automation screen');
  if (!(await proposal.locator('article.trigger').count())) await fail(page, 'the trigger is not under its stage');
  await shot(page, 'automation-screen.png');

  // Drag the deal to Proposal on the board.
  await page.goto(`${base}/deals`);
  const deal = page.locator('.card', { hasText: 'Supply contract' });
  const target = page.locator('section.column', { has: page.locator('.stage-name', { hasText: 'Proposal' }) }).locator('.cards');
  const moved = page.waitForResponse((r) => r.url().includes('/move') && r.request().method() === 'POST');
  await drag(page, deal, target);
  if ((await moved).status() !== 200) await fail(page, 'the move was refused');

  // The robot's task shows in the deal's timeline.
  let found = false;
  for (let i = 0; i < 60 && !found; i++) {
    await page.goto(dealUrl);
    found = (await page.locator('text=Call about Supply contract').count()) > 0;
    if (!found) await page.waitForTimeout(250);
  }
  if (!found) await fail(page, "the robot's task did not appear");
  // The robot's message reached the client's chat at the (fake) provider, and the deal's chat.
  let sent = [];
  for (let i = 0; i < 60; i++) {
    sent = await (await fetch(`${fakeUrl}/_fake/sent`)).json();
    if (sent.some((m) => m.text === 'Your proposal for Supply contract is ready')) break;
    await page.waitForTimeout(250);
  }
  if (!sent.some((m) => m.text === 'Your proposal for Supply contract is ready' && m.chat === '4242')) {
    await fail(page, `the robot's message did not reach the provider: ${JSON.stringify(sent)}`);
  }
  await page.goto(dealUrl);
  await page.locator('[data-test=deal-chat] [data-test=message]', { hasText: 'Your proposal for Supply contract is ready' }).waitFor();
  console.log('automation: message sent by the robot');
  // Its run, with its steps, in the deal's run history.
  await page.click('[data-test=robots] a');
  const done = page.locator('[data-test=runs] tr.run-done', { hasText: 'Call on proposal' });
  if (!(await done.count())) await fail(page, 'the run is not in the history');
  await shot(page, 'automation-runs.png');
  // The bot editor: ask, wait for the reply, branch on it, tag the deal.
  await page.goto(`${base}/automation/bots/new`);
  const bf = page.locator('[data-test=bot-form]');
  await bf.locator('input[name=name]').fill('Qualifier');
  await bf.locator('select[name=s0_kind]').selectOption('message');
  await bf.locator('input[name=s0_text]').fill('Shall we call you about {{deal.name}}?');
  await bf.locator('input[name=s0_buttons]').fill('Yes, No');
  await bf.locator('select[name=s1_kind]').selectOption('wait_reply');
  await bf.locator('input[name=s1_timeout]').fill('60');
  await bf.locator('select[name=s2_kind]').selectOption('branch');
  await bf.locator('input[name=s2_r1_text]').fill('Yes');
  await bf.locator('input[name=s2_r1_goto]').fill('5');
  await bf.locator('select[name=s3_kind]').selectOption('stop');
  await bf.locator('select[name=s4_kind]').selectOption('act');
  await bf.locator('select[name=s4_act]').selectOption('add_tags');
  await bf.locator('input[name=s4_tags]').fill('call me');
  await shot(page, 'automation-bot-editor.png');
  await Promise.all([page.waitForURL(/\/automation\/bots\/\d+/), bf.locator('button[type=submit]').click()]);
  if ((await page.locator('[data-test=problems]').count()) > 0) await fail(page, 'the bot was refused');
  if ((await page.locator('input[name=s4_tags]').inputValue()) !== 'call me') await fail(page, 'the bot did not keep its steps');
  console.log('automation: trigger saved, deal dragged, task created by the robot');
} finally {
  await browser.close();
}
