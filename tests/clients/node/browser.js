#!/usr/bin/env node
// A real headless Chromium (the distribution's package, never a downloaded browser), driven by
// playwright-core and scripted by a Rust test through line-oriented JSON.
//
// Usage: node browser.js '<config JSON>'
//   config: {"executablePath": "/usr/lib/chromium/chromium", "timeoutMs": 30000,
//            "launchTimeoutMs": 120000}
//
// stdin commands, one JSON object per line; each gets exactly one reply line on stdout:
//   {"cmd":"open","page":P,"url":U}            new tab P, navigate; value: the HTTP status
//   {"cmd":"waitFor","page":P,"js":E}          wait until expression E is truthy; value: E's value
//   {"cmd":"eval","page":P,"js":E}             value: E's value (JSON)
//   {"cmd":"click","page":P,"selector":S}
//   {"cmd":"fill","page":P,"selector":S,"value":V}
//   {"cmd":"screenshot","page":P,"path":F}     full-page PNG
//   {"cmd":"incidents"}                        value: {"dialogs":[...],"pageErrors":[...]}
//   {"cmd":"close"}                            close the browser and exit (stdin EOF does too)
// replies: {"ok":true,"value":...} or {"ok":false,"error":"..."}
//
// Dialogs (alert/confirm/prompt) are dismissed and recorded: a test that shows untrusted data
// asserts that none ever opened. Uncaught page errors are recorded too.
"use strict";

const readline = require("readline");
const { chromium } = require("playwright-core");

const config = JSON.parse(process.argv[2] || "{}");
const timeout = config.timeoutMs || 15000;
const pages = new Map();
const incidents = { dialogs: [], pageErrors: [] };
let browser = null;

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${JSON.stringify(name)} (open it first)`);
  return p;
}

async function run(command) {
  switch (command.cmd) {
    case "open": {
      let p = pages.get(command.page);
      if (!p) {
        p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        p.setDefaultTimeout(timeout);
        p.on("dialog", (dialog) => {
          incidents.dialogs.push({ page: command.page, type: dialog.type(), message: dialog.message() });
          dialog.dismiss().catch(() => {});
        });
        p.on("pageerror", (error) => {
          incidents.pageErrors.push({ page: command.page, message: String(error && error.message) });
        });
        pages.set(command.page, p);
      }
      const response = await p.goto(command.url, { timeout });
      return response ? response.status() : null;
    }
    case "waitFor": {
      // Polled from here rather than with waitForFunction: that one evaluates the expression
      // with eval inside the page, which the pages' Content-Security-Policy rightly forbids.
      const p = page(command.page);
      const deadline = Date.now() + timeout;
      let last;
      for (;;) {
        try {
          last = await p.evaluate(command.js);
          if (last) return last;
        } catch (e) {
          last = `threw: ${(e && e.message) || e}`;
        }
        if (Date.now() >= deadline) {
          throw new Error(`timed out after ${timeout} ms; last value: ${JSON.stringify(last)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    case "eval":
      return await page(command.page).evaluate(command.js);
    case "click":
      await page(command.page).click(command.selector, { timeout });
      return null;
    case "fill":
      await page(command.page).fill(command.selector, command.value, { timeout });
      return null;
    case "screenshot":
      await page(command.page).screenshot({ path: command.path, fullPage: true, timeout });
      return command.path;
    case "incidents":
      return incidents;
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
}

async function close() {
  if (browser) {
    const b = browser;
    browser = null;
    await b.close().catch(() => {});
  }
  process.exit(0);
}

async function main() {
  browser = await chromium.launch({
    executablePath: config.executablePath || "/usr/bin/chromium",
    headless: true,
    // As root (CI containers) Chromium refuses to start with its sandbox; /dev/shm is small in
    // containers.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    timeout: config.launchTimeoutMs || timeout,
  });
  reply({ ok: true, value: "ready" });
  const lines = readline.createInterface({ input: process.stdin });
  // One command at a time, in order.
  let queue = Promise.resolve();
  lines.on("line", (line) => {
    queue = queue.then(async () => {
      let command;
      try {
        command = JSON.parse(line);
      } catch (e) {
        reply({ ok: false, error: `not JSON: ${line}` });
        return;
      }
      if (command.cmd === "close") return close();
      try {
        reply({ ok: true, value: (await run(command)) ?? null });
      } catch (e) {
        reply({ ok: false, error: String((e && e.message) || e) });
      }
    });
  });
  lines.on("close", () => {
    queue = queue.then(close);
  });
}

main().catch((e) => {
  reply({ ok: false, error: `cannot start Chromium: ${(e && e.message) || e}` });
  process.exit(1);
});
