#!/usr/bin/env node
// One real socket.io client, scripted by a Rust test through line-oriented JSON.
//
// Usage: node client.js '<config JSON>'
//   config: {
//     "lib": "sio1" | "sio2" | "sio4",          which npm socket.io-client to load
//     "url": "http://127.0.0.1:PORT",           server origin
//     "namespace": "/goodcity",                 namespace (path of the socket URL)
//     "query": {"token": "...", ...},           handshake query (all strings)
//     "auth": {...} | null,                     v4+ CONNECT auth object (ignored by sio1/sio2)
//     "transports": "polling" | "websocket" | "upgrade",
//     "autoAck": null | [args...],              null: acks wait for an "ack" command;
//                                               an array: every ack-requesting event is acked
//                                               at once with these arguments
//     "reconnection": false                     let the library reconnect by itself
//   }
//
// stdout, one JSON object per line (stderr carries diagnostics only):
//   {"type":"ready"}                                    loaded, about to connect (first line)
//   {"type":"connect","transport":"polling"|"websocket"}
//   {"type":"upgrade","transport":"websocket"}          the engine upgraded after connect
//   {"type":"connect_error","message":"...","data":<raw>}
//   {"type":"event","seq":N,"name":"...","args":[...],"hasAck":bool}
//   {"type":"ack_response","ref":R,"args":[...]}       answer to an emit with "ack": true
//   {"type":"disconnect","reason":"..."}
//   {"type":"acked","seq":N}                            an ack command was carried out
//   {"type":"driver_error","message":"..."}            a command the driver could not carry out
// stdin commands, one JSON object per line:
//   {"cmd":"ack","seq":N?,"args":[...]?}   ack event N (default: the latest unacked one)
//   {"cmd":"emit","name":"...","args":[...],"ack":bool,"ref":R}
//   {"cmd":"disconnect"}                   client-side disconnect of the namespace socket
//   {"cmd":"close"}                        disconnect and exit; stdin EOF does the same
"use strict";

const readline = require("readline");

const config = JSON.parse(process.argv[2] || "{}");
const lib = config.lib;
if (!["sio1", "sio2", "sio4"].includes(lib)) {
  process.stderr.write(`client.js: unknown lib ${JSON.stringify(lib)}\n`);
  process.exit(2);
}
const io = require(lib);

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// Undefined inside args would vanish from JSON; null is what the wire carries anyway.
function plain(args) {
  return JSON.parse(JSON.stringify(args, (_k, v) => (v === undefined ? null : v)));
}

const transports = {
  polling: ["polling"],
  websocket: ["websocket"],
  upgrade: ["polling", "websocket"],
}[config.transports || "upgrade"];
if (!transports) {
  process.stderr.write(`client.js: unknown transports ${config.transports}\n`);
  process.exit(2);
}

const options = {
  forceNew: true,
  multiplex: false,
  reconnection: !!config.reconnection,
  transports,
  timeout: 10000,
};
let url = config.url + (config.namespace || "/");
const query = config.query || {};
if (lib === "sio4") {
  options.query = query;
  if (config.auth) options.auth = config.auth;
} else {
  // 1.x/2.x apps put the query in the URL (the original's README and example.html do). It then
  // reaches both the handshake URL and the namespace CONNECT: 1.7.4 sends `0/nsp?query` with no
  // comma, 2.5.0 `0/nsp?query,`. (Passing `query` as an object instead makes 1.7.4 send
  // `0/nsp?[object Object]`.)
  const qs = Object.entries(query)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join("&");
  if (qs) url += `?${qs}`;
}

// Loaded and about to connect: the test's connect deadline starts now, not at spawn, so a
// slow start of the interpreter on a loaded machine is not taken for a slow gateway.
report({ type: "ready" });
const socket = io(url, options);

// The transport in use at connect, then every completed upgrade, so tests can tell that
// "upgrade" mode really ended up on a WebSocket.
let watchedEngine = null;
function onConnect() {
  const engine = socket.io && socket.io.engine;
  report({ type: "connect", transport: engine && engine.transport ? engine.transport.name : null });
  if (engine && engine !== watchedEngine) {
    watchedEngine = engine;
    engine.on("upgrade", (transport) => report({ type: "upgrade", transport: transport && transport.name }));
  }
}

let seq = 0;
const pendingAcks = new Map(); // seq -> ack function, in arrival order

function onServerEvent(name, args, ackFn) {
  seq += 1;
  const hasAck = typeof ackFn === "function";
  report({ type: "event", seq, name, args: plain(args), hasAck });
  if (!hasAck) return;
  if (Array.isArray(config.autoAck)) {
    ackFn(...config.autoAck);
    report({ type: "acked", seq });
  } else {
    pendingAcks.set(seq, ackFn);
  }
}

if (lib === "sio4") {
  socket.onAny((name, ...args) => {
    const last = args[args.length - 1];
    const ackFn = typeof last === "function" ? args.pop() : null;
    onServerEvent(name, args, ackFn);
  });
  socket.on("connect", onConnect);
  socket.on("connect_error", (err) => {
    report({ type: "connect_error", message: err && err.message, data: err && err.data !== undefined ? err.data : null });
  });
  socket.on("disconnect", (reason) => report({ type: "disconnect", reason: String(reason) }));
} else {
  // socket.io-client 1.x/2.x have no catch-all listener: take over event dispatch so that every
  // server EVENT (reserved-looking names included) is reported exactly once, with its ack.
  socket.onevent = function onevent(packet) {
    const args = (packet.data || []).slice();
    const name = args.shift();
    const ackFn = packet.id != null ? this.ack(packet.id) : null;
    onServerEvent(name, args, ackFn);
  };
  socket.on("connect", onConnect);
  // A namespace refusal (ERROR packet) surfaces as the socket's "error" event with the raw data.
  socket.on("error", (data) => {
    const message = typeof data === "string" ? data : data && data.message !== undefined ? data.message : JSON.stringify(data);
    report({ type: "connect_error", message, data: data === undefined ? null : plain(data) });
  });
  // Transport-level failures (server unreachable, handshake refused).
  socket.on("connect_error", (err) => {
    report({ type: "connect_error", message: err && err.message ? err.message : String(err), data: null });
  });
  socket.on("disconnect", (reason) => report({ type: "disconnect", reason: String(reason) }));
}

function runCommand(cmd) {
  switch (cmd.cmd) {
    case "ack": {
      let target = cmd.seq;
      if (target === undefined || target === null) {
        const keys = [...pendingAcks.keys()];
        target = keys[keys.length - 1];
      }
      const ackFn = pendingAcks.get(target);
      if (!ackFn) {
        report({ type: "driver_error", message: `no unacked event with seq ${target}` });
        return;
      }
      pendingAcks.delete(target);
      ackFn(...(cmd.args || []));
      report({ type: "acked", seq: target });
      return;
    }
    case "emit": {
      if (RESERVED.has(cmd.name)) {
        // The libraries refuse to send reserved names (1.x/2.x emit them locally, 4.x throws);
        // a hostile or buggy client can still put them on the wire, so the driver does.
        socket.packet({ type: 2, data: plain([cmd.name, ...(cmd.args || [])]) });
        return;
      }
      const args = [cmd.name, ...(cmd.args || [])];
      if (cmd.ack) {
        args.push((...reply) => report({ type: "ack_response", ref: cmd.ref, args: plain(reply) }));
      }
      socket.emit(...args);
      return;
    }
    case "disconnect":
      socket.disconnect();
      return;
    case "close":
      shutdown();
      return;
    default:
      report({ type: "driver_error", message: `unknown command ${JSON.stringify(cmd)}` });
  }
}

const RESERVED = new Set([
  "connect",
  "connect_error",
  "disconnect",
  "disconnecting",
  "error",
  "newListener",
  "removeListener",
  "reconnect",
  "reconnect_attempt",
  "reconnecting",
  "reconnect_error",
  "reconnect_failed",
  "connect_timeout",
  "ping",
  "pong",
]);

let closing = false;
function shutdown() {
  if (closing) return;
  closing = true;
  try {
    socket.disconnect();
    if (socket.io && socket.io.engine) socket.io.engine.close();
  } catch (e) {
    process.stderr.write(`close: ${e}\n`);
  }
  // Let the close packet reach the server, then leave whatever timers the library still holds.
  setTimeout(() => process.exit(0), 100);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    report({ type: "driver_error", message: `bad command line: ${e.message}` });
    return;
  }
  try {
    runCommand(cmd);
  } catch (e) {
    report({ type: "driver_error", message: `${cmd.cmd}: ${e && e.stack ? e.stack : e}` });
  }
});
rl.on("close", shutdown);
