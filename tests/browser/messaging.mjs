// Chats in a real browser: a client writes to the account's Telegram bot (the fake provider
// posts a signed update to our webhook) while the manager looks at the inbox; the chat shows up
// without a reload, the manager opens it, replies (the fake provider receives the reply), the
// client writes again and the thread updates live, then sends a photo that shows up in the
// thread; the manager sends a picture back (the fake provider fetches it from its link); the
// manager accepts the incoming lead. Screenshots of the inbox and the chat. Run by app/tests/it/browser.rs with the job workers.
import { chromium } from 'playwright-core';
import path from 'node:path';
import zlib from 'node:zlib';

// A small real PNG (a coloured gradient), built here so the browser has a picture to show.
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
const chunk = (type, data) => {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
};
const png = (w, h, tint) => {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) {
      row[1 + x * 3] = (x * 255 / w) & 0xff;
      row[2 + x * 3] = (y * 255 / h) & 0xff;
      row[3 + x * 3] = tint;
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0)),
  ]);
};

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

  // The client sends a photo (hosted by the fake Telegram, downloaded through getFile): it
  // shows in the open thread as a picture.
  const photo = png(160, 100, 200);
  const hosted = await (await fetch(`${fakeUrl}/_fake/media?mime=image/png&name=broken-part.png`, {
    method: 'POST', body: photo,
  })).json();
  const photoUpdate = await fetch(env('HOOK_URL'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': env('HOOK_SECRET') },
    body: JSON.stringify({ update_id: 777001, message: {
      message_id: 9001, date: Math.floor(Date.now() / 1000),
      from: { id: 90001, is_bot: false, first_name: 'Maria Ivanova', username: 'maria_i' },
      chat: { id: 90001, first_name: 'Maria Ivanova', username: 'maria_i', type: 'private' },
      photo: [{ file_id: hosted.id, file_unique_id: 'p1', file_size: photo.length, width: 160, height: 100 }],
      caption: 'This part arrived broken',
    } }),
  });
  if (photoUpdate.status !== 200) throw new Error(`the photo webhook answered ${photoUpdate.status}`);
  const picture = page.locator('[data-test=message]', { hasText: 'This part arrived broken' }).locator('[data-test=message-image]');
  await picture.waitFor();
  for (let i = 0; i < 40 && !(await picture.evaluate((img) => img.complete && img.naturalWidth)); i++) await page.waitForTimeout(250);
  if ((await picture.evaluate((img) => img.naturalWidth)) !== 160) await fail(page, 'the photo does not show');

  // The manager answers with a picture of their own from the file form.
  await page.setInputFiles('[data-test=attach] input[type=file]', { name: 'replacement.png', mimeType: 'image/png', buffer: png(120, 80, 40) });
  await page.fill('[data-test=attach] input[name=text]', 'The replacement we send');
  await page.click('[data-test=attach] button[type=submit]');
  await page.locator('[data-test=message]', { hasText: 'The replacement we send' }).locator('[data-test=message-image]').waitFor();
  let photoSent;
  for (let i = 0; i < 60 && !photoSent; i++) {
    sent = await (await fetch(`${fakeUrl}/_fake/sent`)).json();
    photoSent = sent.find((m) => m.text === 'The replacement we send');
    if (!photoSent) await page.waitForTimeout(250);
  }
  if (!photoSent || !photoSent.body.photo || !photoSent.file || photoSent.file.content_type !== 'image/png') {
    await fail(page, `the picture did not reach the client: ${JSON.stringify(photoSent)}`);
  }
  await page.locator('[data-test=message][data-status=sent]', { hasText: 'The replacement we send' }).waitFor();
  await shot(page, 'messaging-files.png');

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
