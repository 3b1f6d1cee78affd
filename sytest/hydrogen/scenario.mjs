// Two users log in through Hydrogen's own login page in headless Chromium and must
// reach their room list with no fatal error; a screenshot of each is saved. For each
// ROOM_NAME (rooms USER1 created and invited USER2 to; an encrypted one too), USER2
// accepts the invite in Hydrogen, they exchange a message each through the composer,
// each must see the other's text, and screenshots of both timelines are saved: the
// first room's as hydrogen-timeline.png, the others' as hydrogen-timeline-N.png.
//
// node scenario.mjs HOMESERVER_URL ARTIFACT_DIR USER1 PASSWORD1 USER2 PASSWORD2 [ROOM_NAME...]
// Needs dist/ (node build.mjs) and Debian's chromium (or CHROMIUM=/path).
import http from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import puppeteer from "puppeteer-core";

const [homeserver, artifacts, ...creds] = process.argv.slice(2);
if (!homeserver || !artifacts || creds.length < 4) {
    console.error("usage: node scenario.mjs HOMESERVER_URL ARTIFACT_DIR USER1 PASSWORD1 USER2 PASSWORD2");
    process.exit(2);
}
const dist = new URL("./dist/", import.meta.url).pathname;
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
    ".wasm": "application/wasm", ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2" };

// Serve dist/ on loopback.
const server = http.createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^\/+/, "") || "index.html";
    try {
        const body = await readFile(join(dist, path));
        res.writeHead(200, { "content-type": types[extname(path)] || "application/octet-stream" });
        res.end(body);
    } catch {
        res.writeHead(404);
        res.end();
    }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const app = `http://127.0.0.1:${server.address().port}/index.html`;

const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
await mkdir(artifacts, { recursive: true });

async function login(user, password) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport({ width: 1100, height: 700 });
    const problems = [];
    const calls = [];
    const consoleLines = [];
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    page.on("console", (m) => { consoleLines.push(`${m.type()}: ${m.text()}`); });
    page.on("console", (m) => { if (m.type() === "error" || m.type() === "warn") problems.push(`console ${m.type()}: ${m.text()}`); });
    page.on("response", (r) => {
        if (!r.url().startsWith(homeserver) && r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`);
        if (r.url().startsWith(homeserver)) calls.push(`${r.status()} ${r.request().method()} ${r.url().slice(homeserver.length).split("?")[0]}`);
        if (r.url().startsWith(homeserver) && r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
    });
    diagnostics[user] = { calls, consoleLines };
    await page.goto(app, { waitUntil: "domcontentloaded" });
    await page.waitForSelector("#homeserver", { timeout: 30000 });
    await page.$eval("#homeserver", (el) => { el.value = ""; });
    await page.type("#homeserver", homeserver);
    await page.$eval("#homeserver", (el) => el.blur());
    await page.waitForSelector("#username", { timeout: 30000 });
    await page.type("#username", user);
    await page.type("#password", password);
    const [button] = await page.$$("xpath/.//button[contains(., 'Log In')]");
    if (!button) throw new Error("no Log In button");
    await button.click();
    let reached = true;
    try {
        await page.waitForSelector(".LeftPanel", { visible: true, timeout: 60000 });
        // Let the first syncs land, then look for what Hydrogen shows when one fails.
        await new Promise((r) => setTimeout(r, 3000));
    } catch {
        reached = false;
    }
    const shot = join(artifacts, `hydrogen-${user}.png`);
    await page.screenshot({ path: shot });
    const text = await page.evaluate(() => document.body.innerText);
    const fatal = await page.evaluate(() => window.__hydrogenFatal || null);
    const status = await page.$eval(".SessionStatusView", (el) => el.innerText).catch(() => "");
    // What Hydrogen's start-up needs answered: keys/upload, then the filter, then sync.
    const answered = (re) => calls.some((c) => c.startsWith("200 ") && re.test(c));
    const startup = {
        keys_upload: answered(/POST .*\/keys\/upload$/),
        filter: answered(/POST .*\/user\/[^/]+\/filter$/),
        sync: answered(/GET .*\/sync$/),
    };
    console.log(JSON.stringify({ user, reached_room_list: reached, startup, fatal, status, screenshot: shot, problems }));
    console.log(`requests of ${user} to the homeserver: ${[...new Set(calls)].join(", ")}`);
    if (!Object.values(startup).every(Boolean)) {
        console.log(`${user}: Hydrogen's start-up calls were not all answered 200: ${JSON.stringify(startup)}`);
        return false;
    }
    pages[user] = page;
    if (!reached || fatal) {
        console.log(`page text for ${user}:\n${text}\nrequests to the homeserver:\n${calls.join("\n")}\nconsole:\n${consoleLines.slice(-40).join("\n")}`);
        return false;
    }
    if (/sync failed|error/i.test(status)) {
        console.log(`${user}: Hydrogen reports a problem: ${status}`);
        return false;
    }
    return true;
}

const pages = {};
/** The message composer: shown only in a room the user has joined. */
const COMPOSER = ".MessageComposer textarea, .MessageComposer input";
/** Per user: every request to the homeserver and every console line, for failure reports. */
const diagnostics = {};

async function openRoom(page, name) {
    const tile = await page.waitForSelector(`xpath/.//ul[contains(@class, 'RoomList')]//li[contains(., '${name}')]//a`, { timeout: 30000 });
    await tile.click();
}

async function say(page, text) {
    const input = await page.waitForSelector(COMPOSER, { visible: true, timeout: 30000 });
    await input.type(text);
    await page.keyboard.press("Enter");
}

async function waitForText(page, text, who) {
    try {
        await page.waitForFunction((t) => (document.querySelector(".Timeline, .RoomView_body") || document.body).innerText.includes(t), { timeout: 30000 }, text);
    } catch {
        // What the page showed instead, and what it asked of the server: enough to tell a
        // message that never came from one that came and could not be decrypted.
        const shown = await page.evaluate(() => (document.querySelector(".Timeline, .RoomView_body") || document.body).innerText).catch((e) => `(page text unavailable: ${e})`);
        await page.screenshot({ path: join(artifacts, `hydrogen-failed-${who}.png`) }).catch(() => {});
        for (const [user, d] of Object.entries(diagnostics)) {
            console.log(`${user}'s requests to the homeserver, in order:\n${d.calls.join("\n")}`);
            console.log(`${user}'s last console lines:\n${d.consoleLines.slice(-60).join("\n")}`);
        }
        throw new Error(`${who} never saw "${text}" in the timeline; it showed:\n${shown}`);
    }
}

async function talk(roomName, [first, second], n) {
    const [a, b] = [pages[first], pages[second]];
    await openRoom(b, roomName);
    // The second user is invited: the invite view renders after the click, so wait for
    // its Accept button (looking once raced it), then for the composer that only a
    // joined room shows.
    const accept = await b.waitForSelector("xpath/.//div[contains(@class, 'InviteView')]//button[contains(., 'Accept')]", { visible: true, timeout: 30000 })
        .catch(() => { throw new Error(`${second} was never shown the invite to ${roomName}`); });
    await accept.click();
    await b.waitForSelector(COMPOSER, { visible: true, timeout: 30000 })
        .catch(() => { throw new Error(`${second} accepted the invite to ${roomName} but never got its composer`); });
    await openRoom(a, roomName);
    await say(a, `Hello ${second}, this is ${first} in ${roomName}`);
    await waitForText(b, `this is ${first} in ${roomName}`, second);
    await say(b, `Hi ${first}, ${second} here in ${roomName}`);
    await waitForText(a, `${second} here in ${roomName}`, first);
    await new Promise((r) => setTimeout(r, 1000));
    const suffix = n === 0 ? "" : `-${n}`;
    const shot = join(artifacts, `hydrogen-timeline${suffix}.png`);
    await a.screenshot({ path: shot });
    await b.screenshot({ path: join(artifacts, `hydrogen-timeline${suffix}-${second}.png`) });
    console.log(JSON.stringify({ room: roomName, exchanged: true, screenshot: shot }));
}

let ok = true;
try {
    ok = (await login(creds[0], creds[1])) && ok;
    ok = (await login(creds[2], creds[3])) && ok;
    for (const [n, room] of creds.slice(4).entries()) {
        if (ok) await talk(room, [creds[0], creds[2]], n);
    }
} catch (e) {
    console.log(`scenario failed: ${e.stack || e}`);
    ok = false;
} finally {
    await browser.close();
    server.close();
}
process.exit(ok ? 0 : 1);
