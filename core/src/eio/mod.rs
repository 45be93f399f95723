//! Engine.IO protocol revisions 3 and 4: packets, payloads, sessions, heartbeats and the
//! polling→WebSocket upgrade.
