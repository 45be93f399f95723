#!/usr/bin/env node
// A plain socket.io 4.8 server (allowEIO3) used only to self-test the client drivers: if a driver
// works against the reference implementation, a failure against Courier is Courier's.
//
// Usage: node reference-server.js      listens on 127.0.0.1 on a free port and prints
//                                      {"port":N} as its first stdout line; exits on stdin EOF.
//
// Namespace /chat:
//   - middleware: token "bad" (handshake query or CONNECT auth) is refused with
//     Error("Authentication failed");
//   - on connect: emits welcome {token, deviceId, meta, auth, transport, eio}, then "ask" with an
//     ack; the ack's arguments come back as "ack_received" [...args];
//   - on engine upgrade: emits "upgraded" {transport};
//   - client "echo" with an ack: acks with the same arguments;
//   - client "kick": the server disconnects the socket.
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const server = new Server(httpServer, {
  allowEIO3: true,
  pingInterval: 25000,
  pingTimeout: 20000,
  cors: { origin: true, credentials: true },
});

const chat = server.of("/chat");

chat.use((socket, next) => {
  const q = socket.handshake.query;
  const a = socket.handshake.auth || {};
  if (q.token === "bad" || a.token === "bad") {
    next(new Error("Authentication failed"));
  } else {
    next();
  }
});

chat.on("connection", (socket) => {
  const q = socket.handshake.query;
  socket.emit("welcome", {
    token: q.token === undefined ? null : q.token,
    deviceId: q.deviceId === undefined ? null : q.deviceId,
    meta: q.meta === undefined ? null : q.meta,
    auth: socket.handshake.auth || {},
    transport: socket.conn.transport.name,
    eio: String(socket.conn.protocol),
  });
  socket.emit("ask", "question", 7, (...reply) => socket.emit("ack_received", ...reply));
  socket.conn.on("upgrade", (transport) => socket.emit("upgraded", { transport: transport.name }));
  socket.on("echo", (...args) => {
    const last = args[args.length - 1];
    if (typeof last === "function") {
      const ack = args.pop();
      ack(...args);
    }
  });
  socket.on("kick", () => socket.disconnect(true));
});

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: httpServer.address().port }) + "\n");
});

process.stdin.resume();
process.stdin.on("end", () => {
  server.close();
  process.exit(0);
});
