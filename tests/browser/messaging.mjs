// Chats in a real browser: a client writes to the account's Telegram bot (the fake provider
// posts a signed update to our webhook) while the manager looks at the inbox; the chat shows up
// without a reload, the manager opens it, replies (the fake provider receives the reply), the
// client writes again and the thread updates live; the manager accepts the incoming lead.
// Screenshots of the inbox and the chat. Run by app/tests/it/browser.rs with the job workers.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('BASE_URL');
const fakeUrl = env('FAKE_URL');
const shots = env('SCREENSHOTS');
const shot = (page, name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = async (page, what) => {
  await shot(page, 'messaging-failure.png');
  throw new Error(`${what} (at ${page.url()})`);
};
const clientWrites = async (text) => {
  const res = await fetch(`${fakeUrl}/_fake/telegram/update`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      webhook_url: env('HOOK_URL'), secret: env('HOOK_SECRET'),
      chat_id: 90001, first_name: 'Maria Ivanova', username: 'maria_i', text,
    }),
  });
  const answer = await res.json();
  if (answer.status !== 200) throw new Error(`the webhook answered ${JSON.stringify(answer)}`);
};

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(20000);
  await page.goto(`${base}/sign-in`);
  await page.fill('#email', env('ADMIN_EMAIL'));
  await page.fill('#password', env('ADMIN_PASSWORD'));
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

  await page.click('[data-test=nav-inbox]');
  await page.waitForURL(`${base}/inbox`);
  // The client writes while the inbox is open: the chat appears without a reload.
  await clientWrites('Hello! Do you deliver to Kazan?');
  const conv = page.locator('[data-test=conversation]', { hasText: 'Maria Ivanova' });
  await conv.waitFor();
  if (!(await conv.locator('[data-test=unread]').count())) await fail(page, 'the new chat is not marked unread');
  await shot(page, 'messaging-inbox.png');

  await conv.click();
  await page.waitForURL(/\/inbox\/\d+$/);
  await page.locator('[data-test=message]', { hasText: 'Do you deliver to Kazan?' }).waitFor();
  if ((await page.locator('[data-test=deal-stage]').innerText()).trim() !== 'Incoming leads') await fail(page, 'the chat is not an incoming lead');

  // The reply goes to the provider.
  await page.fill('[data-test=reply] textarea[name=text]', 'Yes, in two days. Shall I send the prices?');
  await page.click('[data-test=reply] button[type=submit]');
  await page.locator('[data-test=message]', { hasText: 'Shall I send the prices?' }).waitFor();
  let sent = [];
  for (let i = 0; i < 60; i++) {
    sent = await (await fetch(`${fakeUrl}/_fake/sent`)).json();
    if (sent.some((m) => m.text.includes('Shall I send the prices?'))) break;
    await page.waitForTimeout(250);
  }
  const reply = sent.find((m) => m.text.includes('Shall I send the prices?'));
  if (!reply || reply.chat !== '90001') await fail(page, `the reply did not reach the client: ${JSON.stringify(sent)}`);
  await page.locator('[data-test=message][data-status=sent]', { hasText: 'Shall I send the prices?' }).waitFor();

  // The client answers; the open thread shows it without a reload.
  await clientWrites('Yes please');
  await page.locator('[data-test=message]', { hasText: 'Yes please' }).waitFor();

  // Accept the incoming lead: it moves to the pipeline's first stage.
  await Promise.all([page.waitForURL(/\/inbox\/\d+\?done=inbox.accepted/), page.click('[data-test=accept]')]);
  const stage = (await page.locator('[data-test=deal-stage]').innerText()).trim();
  if (stage === 'Incoming leads') await fail(page, 'the lead was not accepted');
  if (await page.locator('[data-test=lead-actions]').count()) await fail(page, 'an accepted lead still offers to accept');
  await shot(page, 'messaging-chat.png');
  console.log('messaging flow done');
} finally {
  await browser.close();
}
