// A person's walk through the playground and the inspector, in headless Chromium driven by
// Playwright (playwright-core with the system's Chromium), for tests/playground.rs.
//
//   node playground_walk.mjs <admin base URL, e.g. http://127.0.0.1:5800> <output dir>
//
// Environment: ONEBOT_BRIDGE_TEST_CHROMIUM (default /usr/bin/chromium).
//
// In the playground, as Alice in group 20001, it sends a message that mentions the bot and
// carries a picture; it waits for the bot's reply with a picture of its own to appear (loaded,
// not a broken image) and takes a screenshot. Alice then recalls her message, and a stranger's
// friend request is accepted by the bot, which greets them in their new private chat. In the inspector it waits for the translated pair
// of both directions (the v12 group message and the v11 event it became; the bot's v11 send and
// the v12 requests it became) and takes another. Each screenshot is decoded and must not be
// blank. The outcome is one JSON line on stdout (`WALK {...}`); any failure exits 1 with the
// reason on stderr.

import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import fs from 'node:fs';
import path from 'node:path';

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node playground_walk.mjs <admin base URL> <output dir>');
  process.exit(2);
}
const executablePath = process.env.ONEBOT_BRIDGE_TEST_CHROMIUM || '/usr/bin/chromium';
const WAIT = 30_000;

/** A picture of the kind a person would send: a 120×80 PNG with a few coloured bands. */
function samplePicture(file) {
  const png = new PNG({ width: 120, height: 80 });
  for (let y = 0; y < png.height; y++) {
    for (let x = 0; x < png.width; x++) {
      const i = (png.width * y + x) << 2;
      const band = Math.floor(x / 30);
      png.data[i] = [230, 60, 40, 250][band];
      png.data[i + 1] = [80, 180, 120, 200][band] - (y >> 1);
      png.data[i + 2] = [60, 90, 220, 40][band] + (y >> 2);
      png.data[i + 3] = 255;
    }
  }
  fs.writeFileSync(file, PNG.sync.write(png));
}

/** Not blank: many colours, and no single colour covering nearly all of the picture. */
function checkNotBlank(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  const counts = new Map();
  for (let i = 0; i < png.data.length; i += 4) {
    const key = (png.data[i] << 16) | (png.data[i + 1] << 8) | png.data[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const pixels = png.width * png.height;
  const dominant = Math.max(...counts.values()) / pixels;
  if (counts.size < 16 || dominant > 0.97) {
    throw new Error(`${file} looks blank: ${counts.size} colours, the commonest covers ${(dominant * 100).toFixed(1)} %`);
  }
  return { width: png.width, height: png.height, colours: counts.size, dominant: Number(dominant.toFixed(3)) };
}

const browser = await chromium.launch({
  executablePath,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const result = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const problems = [];
  context.on('weberror', (error) => problems.push(String(error.error())));
  context.on('response', (resp) => resp.status() >= 400 && problems.push(`${resp.status()} for ${resp.url()}`));

  // --- the playground -------------------------------------------------------------------------
  const chat = await context.newPage();
  chat.on('console', (msg) => msg.type() === 'error' && problems.push(`console: ${msg.text()}`));
  await chat.goto(`${base}/playground/`);
  await chat.locator('#link-state', { hasText: /^connected$/ }).waitFor({ timeout: WAIT });
  await chat.click('#chats [data-chat="group:20001"]');
  await chat.selectOption('#as-user', '10001');
  const picture = path.join(outDir, 'sent.png');
  samplePicture(picture);
  const word = `picture-${Date.now()}`;
  await chat.fill('#text', `hello bot, here is a ${word}`);
  await chat.check('#mention-bot');
  await chat.setInputFiles('#image', picture);
  await chat.click('#send');

  // Alice's message shows (with her picture), then the bot's reply with its own.
  const mine = chat.locator('#messages .message[data-sender="10001"]', { hasText: word });
  await mine.locator('img').first().waitFor({ timeout: WAIT });
  const reply = chat.locator('#messages .message[data-sender="10000"]', { hasText: 'Hello' }).last();
  await reply.waitFor({ timeout: WAIT });
  const image = reply.locator('img').first();
  await image.waitFor({ timeout: WAIT });
  await chat.waitForFunction((img) => img.complete && img.naturalWidth > 0, await image.elementHandle(), { timeout: WAIT });
  result.reply_text = (await reply.locator('.text').allInnerTexts()).join(' ');
  result.reply_image = await image.evaluate((img) => ({ width: img.naturalWidth, height: img.naturalHeight }));
  if (!/1 picture/.test(result.reply_text)) {
    throw new Error(`the bot's reply does not say it saw the picture: ${JSON.stringify(result.reply_text)}`);
  }
  const chatShot = path.join(outDir, 'playground.png');
  await chat.screenshot({ path: chatShot, fullPage: true });
  result.playground = checkNotBlank(chatShot);

  // Alice takes her message back: it leaves the page (and the bot is told).
  await mine.locator('.recall-button').click();
  await mine.waitFor({ state: 'detached', timeout: WAIT });

  // A stranger asks to be the bot's friend; the bot accepts and greets them in a new chat.
  await chat.click('#friend-request');
  const newFriend = chat.locator('#chats [data-chat^="private:"]').filter({ hasNotText: /Alice|Bob|Carol/ }).first();
  await newFriend.waitFor({ timeout: WAIT });
  result.new_friend = await newFriend.getAttribute('data-chat');
  await newFriend.click();
  const greeting = chat.locator('#messages .message[data-sender="10000"]', { hasText: 'Nice to meet you' });
  await greeting.waitFor({ timeout: WAIT });
  await chat.locator('#messages .notice', { hasText: 'accepted' }).first().waitFor({ timeout: WAIT });
  const friendShot = path.join(outDir, 'playground-friend.png');
  await chat.screenshot({ path: friendShot });
  result.playground_friend = checkNotBlank(friendShot);

  // --- the inspector ----------------------------------------------------------------------------
  const insp = await context.newPage();
  insp.on('console', (msg) => msg.type() === 'error' && problems.push(`console: ${msg.text()}`));
  await insp.goto(`${base}/inspector/`);
  await insp.locator('#link-state', { hasText: /^connected$/ }).waitFor({ timeout: WAIT });
  // v12 → v11: the group message event, both sides shown.
  const event = insp.locator('#feed .item[data-kind="event"][data-name="message.group"]', { hasText: word }).first();
  await event.waitFor({ timeout: WAIT });
  const eventV12 = (await event.locator('.side-v12 pre').allInnerTexts()).join('\n');
  const eventV11 = (await event.locator('.side-v11 pre').allInnerTexts()).join('\n');
  if (!/"mention"/.test(eventV12) || !/"image"/.test(eventV12)) {
    throw new Error(`the v12 side of the event lacks the mention or the picture:\n${eventV12}`);
  }
  if (!/CQ:at,qq=10000/.test(eventV11) || !/CQ:image/.test(eventV11)) {
    throw new Error(`the v11 side of the event lacks the mention or the picture:\n${eventV11}`);
  }
  // v11 → v12: the bot's reply (nonebot sends `send_msg`), with the upload and send it became.
  const action = insp.locator('#feed .item[data-kind="action"][data-ok="true"]', { hasText: 'Hello' }).first();
  await action.waitFor({ timeout: WAIT });
  result.action_name = await action.getAttribute('data-name');
  const actionV12 = (await action.locator('.side-v12 pre').allInnerTexts()).join('\n');
  const actionV11 = (await action.locator('.side-v11 pre').allInnerTexts()).join('\n');
  if (!/send_message/.test(actionV12) || !/upload_file/.test(actionV12)) {
    throw new Error(`the v12 side of the bot's reply lacks upload_file or send_message:\n${actionV12}`);
  }
  if (!/base64:\/\//.test(actionV11)) {
    throw new Error(`the v11 side of the bot's reply lacks its base64 picture:\n${actionV11}`);
  }
  await insp.locator('#status #links').waitFor({ timeout: WAIT });
  const inspShot = path.join(outDir, 'inspector.png');
  await insp.screenshot({ path: inspShot });
  result.inspector = checkNotBlank(inspShot);
  if (problems.length) {
    throw new Error(`the pages reported errors: ${problems.join('; ')}`);
  }
  console.log('WALK ' + JSON.stringify(result));
} catch (error) {
  for (const [i, page] of browser.contexts().flatMap((c) => c.pages()).entries()) {
    await page.screenshot({ path: path.join(outDir, `failed-${i}.png`) }).catch(() => {});
  }
  console.error(`playground walk failed: ${error.stack || error}`);
  console.error(`so far: ${JSON.stringify(result)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
