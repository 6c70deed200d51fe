// A person's whole journey through the broker's pages in a real browser: Debian's chromium,
// headless, driven by playwright-core, with a CDP virtual authenticator (internal transport,
// resident keys, user verification). The pages' own JavaScript runs under their CSP: the login
// page's polling, the passkey ceremonies.
//
//   1. an RP's authorization URL → the login page; `broker card approve` answers the helper
//      link from a terminal while the page polls; consent; the RP gets a code (aal3: the card);
//   2. /account: add a passkey;
//   3. a fresh browser context (no broker session) logs in with that passkey: aal2;
//   4. the RP asks for aal3: the page sends the person to the card (no passkey offered);
//   5. a login whose cookie is gone says so and offers to start again; the error page.
// Every page is screenshotted in Japanese and English (OUT_DIR) and checked with axe-core:
// no serious or critical violation. Prints one JSON line of results; exits 1 on a failure.
//
// Environment: BROKER_ISSUER, BROKER_BIN (for `broker card approve`), CARD_DIR, OUT_DIR,
// CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createRequire } from "node:module";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const issuer = process.env.BROKER_ISSUER;
const bin = process.env.BROKER_BIN;
const cardDir = process.env.CARD_DIR;
const out = process.env.OUT_DIR;
fs.mkdirSync(out, { recursive: true });

const CLIENT = "local-dev";
const SECRET = "local-dev-secret";
const REDIRECT = "http://127.0.0.1:8765/callback";
const VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

const results = { steps: [], screenshots: [], axe: {}, failures: [] };

function check(cond, what) {
  if (!cond) {
    results.failures.push(what);
    throw new Error(what);
  }
}

function authUrl(extra = {}) {
  const u = new URL(issuer + "/authorize");
  const p = {
    client_id: CLIENT, redirect_uri: REDIRECT, response_type: "code", scope: "openid profile",
    state: "st", nonce: "n", code_challenge: CHALLENGE, code_challenge_method: "S256", ...extra,
  };
  for (const [k, v] of Object.entries(p)) { u.searchParams.set(k, v); }
  return u.toString();
}

async function tokens(code) {
  const r = await fetch(issuer + "/token", {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: "Basic " + Buffer.from(`${CLIENT}:${SECRET}`).toString("base64"),
    },
    body: new URLSearchParams({
      grant_type: "authorization_code", code, redirect_uri: REDIRECT, code_verifier: VERIFIER,
    }),
  });
  const j = await r.json();
  check(r.ok, `token request failed: ${JSON.stringify(j)}`);
  return JSON.parse(Buffer.from(j.id_token.split(".")[1], "base64url").toString());
}

/// axe-core on the page as it is now: serious and critical violations are failures.
async function axe(page, name) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(async () => {
    const res = await window.axe.run(document, { resultTypes: ["violations"] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
  });
  results.axe[name] = r;
  const bad = r.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(bad.length === 0, `axe on ${name}: ${JSON.stringify(bad)}`);
}

async function shot(page, name) {
  const file = path.join(out, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  results.screenshots.push(file);
}

/// Screenshot and axe the page in Japanese, then in English (`?lang=en`), and back.
async function bothLanguages(page, name) {
  const url = page.url();
  const lang = await page.getAttribute("html", "lang");
  check(lang === "ja", `${name}: the page is Japanese first (lang=${lang})`);
  await shot(page, `${name}-ja`);
  await axe(page, `${name}-ja`);
  const en = new URL(url);
  en.searchParams.set("lang", "en");
  await page.goto(en.toString());
  check((await page.getAttribute("html", "lang")) === "en", `${name}: English on ?lang=en`);
  await shot(page, `${name}-en`);
  await axe(page, `${name}-en`);
}

async function approveWithCard(page) {
  const link = await page.getAttribute("#card-helper-link", "href");
  check(link && link.includes("/card/v1/tx/"), `the helper link is on the page: ${link}`);
  await run(bin, ["card", "approve", "--card", cardDir, "--pin", "1234", "--sign-pin", "ABC123", link]);
}

async function virtualAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2", transport: "internal", hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

async function newPage(browser) {
  const ctx = await browser.newContext({ locale: "ja-JP", viewport: { width: 800, height: 900 } });
  const page = await ctx.newPage();
  if (process.env.JOURNEY_DEBUG) {
    page.on("request", (r) => console.error("request", r.url()));
    page.on("requestfailed", (r) => console.error("failed", r.url(), r.failure()?.errorText));
  }
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Script errors; a response's error status (the lost login's 403, the error page's 410) is
  // the page working, not failing.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) { errors.push(m.text()); }
  });
  return { ctx, page, errors };
}

// The RP's redirect URI: a page that only says the browser arrived (the code is read from
// the URL). Playwright's routes do not see the target of a redirect, so a real listener.
const rp = http.createServer((_, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<!doctype html><html lang=en><title>RP</title><main>RP callback</main></html>");
});
await new Promise((ok, fail) => rp.once("error", fail).listen(8765, "127.0.0.1", ok));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let status = 0;
try {
  // 1. Card login through the page, its status polled by its own script.
  const one = await newPage(browser);
  const auth = await virtualAuthenticator(one.page);
  await one.page.goto(authUrl());
  check(/\/login\//.test(one.page.url()), `the login page: ${one.page.url()}`);
  check(await one.page.isHidden("#continue"), "no Continue before the card has answered");
  await bothLanguages(one.page, "login");
  const status1 = await one.page.textContent("#status");
  check(status1.includes("Waiting for your passkey or your card"), `the status says it waits: ${status1}`);
  check(await one.page.getAttribute("#status", "aria-live") === "polite", "the status is announced");
  await approveWithCard(one.page);
  await one.page.waitForURL(/\/consent\//, { timeout: 30000 });
  results.steps.push("card login through the page's polling");
  await bothLanguages(one.page, "consent");
  await one.page.click("#approve");
  await one.page.waitForURL((u) => u.toString().startsWith(REDIRECT), { timeout: 15000 });
  const code1 = new URL(one.page.url()).searchParams.get("code");
  const id1 = await tokens(code1);
  check(id1.acr === "aal3", `the card login reaches aal3: ${id1.acr}`);
  results.steps.push(`card: acr ${id1.acr}, amr ${id1.amr}`);

  // 2. The account page: add a passkey.
  await one.page.goto(issuer + "/account");
  await bothLanguages(one.page, "account");
  await one.page.goto(issuer + "/account");
  await one.page.fill("#new-name", "Chromium");
  await one.page.click("#add-passkey");
  await one.page.waitForSelector("[data-passkey]", { timeout: 15000 });
  await shot(one.page, "account-with-passkey-ja");
  await axe(one.page, "account-with-passkey-ja");
  const { credentials } = await auth.cdp.send("WebAuthn.getCredentials", { authenticatorId: auth.authenticatorId });
  check(credentials.length === 1 && credentials[0].isResidentCredential, `one discoverable passkey on the authenticator: ${JSON.stringify(credentials.map((c) => ({ rk: c.isResidentCredential, rpId: c.rpId })))}`);
  results.steps.push("passkey enrolled on /account");

  // 3. A fresh context (no broker session) with the same passkey on its authenticator: the
  //    login page's autofill (conditional mediation) offers it at once; the authenticator
  //    (presence simulated) answers; the RP gets a code at aal2.
  const two = await newPage(browser);
  const auth2 = await virtualAuthenticator(two.page);
  await auth2.cdp.send("WebAuthn.addCredential", { authenticatorId: auth2.authenticatorId, credential: credentials[0] });
  await two.page.goto(authUrl());
  await two.page.waitForURL((u) => u.toString().startsWith(REDIRECT), { timeout: 20000 });
  const id2 = await tokens(new URL(two.page.url()).searchParams.get("code"));
  check(id2.acr === "aal2", `the passkey login reaches aal2: ${id2.acr}`);
  check(JSON.stringify(id2.amr) === JSON.stringify(["hwk", "user", "mfa"]), `amr: ${JSON.stringify(id2.amr)}`);
  results.steps.push(`passkey by autofill: acr ${id2.acr}, amr ${id2.amr}`);
  // The same with the button, where the browser offers no autofill: the passkey as it is
  // now (its signature counter moved on; an older copy would be refused as a clone).
  const now = await auth2.cdp.send("WebAuthn.getCredentials", { authenticatorId: auth2.authenticatorId });
  const four = await newPage(browser);
  await four.page.addInitScript(() => {
    if (window.PublicKeyCredential) {
      PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);
    }
  });
  const auth4 = await virtualAuthenticator(four.page);
  await auth4.cdp.send("WebAuthn.addCredential", { authenticatorId: auth4.authenticatorId, credential: now.credentials[0] });
  await four.page.goto(authUrl());
  check(await four.page.isVisible("#passkey-login"), "the login page offers the passkey");
  await four.page.click("#passkey-login");
  await four.page.waitForURL((u) => u.toString().startsWith(REDIRECT), { timeout: 20000 });
  const id4 = await tokens(new URL(four.page.url()).searchParams.get("code"));
  check(id4.acr === "aal2", `the passkey button reaches aal2: ${id4.acr}`);
  results.steps.push("passkey by the button: aal2");

  // 4. aal3 asked: the passkey session is sent to the card.
  await two.page.goto(authUrl({ acr_values: "aal3" }));
  check(/\/login\//.test(two.page.url()), `a step-up to the card: ${two.page.url()}`);
  check(!(await two.page.isVisible("#passkey-login")), "no passkey offered for aal3");
  await shot(two.page, "login-step-up-ja");
  await approveWithCard(two.page);
  await two.page.waitForURL((u) => u.toString().startsWith(REDIRECT), { timeout: 30000 });
  const id3 = await tokens(new URL(two.page.url()).searchParams.get("code"));
  check(id3.acr === "aal3", `the step-up reaches aal3: ${id3.acr}`);
  results.steps.push("aal3 on a passkey session: stepped up with the card");

  // 5. A login whose cookie is gone: the page says so and offers to start again.
  const three = await newPage(browser);
  await three.page.goto(authUrl());
  // On a phone-width screen the QR code (to scan with a phone) is not offered; the link is.
  await three.page.setViewportSize({ width: 390, height: 844 });
  check(!(await three.page.isVisible(".qr")) && await three.page.isVisible("#card-helper-link"),
    "no QR code on a phone-width screen, the link instead");
  await shot(three.page, "login-phone-ja");
  await axe(three.page, "login-phone-ja");
  await three.ctx.clearCookies();
  await three.page.waitForSelector("#restart:not([hidden])", { timeout: 15000 });
  const lost = await three.page.textContent("#status");
  check(lost.includes("期限切れ"), `the lost login is said: ${lost}`);
  await shot(three.page, "login-lost-ja");
  // The error page, and the index.
  await three.page.goto(issuer + "/login/no-such-login");
  await bothLanguages(three.page, "error");
  await three.page.goto(issuer + "/");
  await bothLanguages(three.page, "index");
  // The device grant's pages: the code entry, and the confirmation a TV's QR code opens.
  await three.page.goto(issuer + "/device");
  await bothLanguages(three.page, "device");
  const da = await fetch(issuer + "/device_authorization", {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: "Basic " + Buffer.from("catv:catv-demo-secret").toString("base64"),
    },
    body: "scope=openid",
  }).then((r) => r.json());
  await three.page.goto(da.verification_uri_complete);
  check(await three.page.isVisible("#device-continue"), "the device confirmation page");
  await bothLanguages(three.page, "device-confirm");
  const icon = await fetch(issuer + "/favicon.svg");
  check(icon.ok && icon.headers.get("content-type") === "image/svg+xml", "a favicon");

  for (const p of [one, two, three, four]) {
    check(p.errors.length === 0, `no script errors: ${p.errors.join("; ")}`);
  }
} catch (e) {
  status = 1;
  if (!results.failures.includes(e.message)) { results.failures.push(String(e.stack || e)); }
} finally {
  await browser.close();
  rp.close();
}
fs.writeFileSync(path.join(out, "results.json"), JSON.stringify(results, null, 2));
console.log(JSON.stringify(results));
process.exit(status);
