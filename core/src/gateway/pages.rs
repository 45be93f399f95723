//! The two pages a person looks at: the demo page (`/`, `/demo`; only when the built-in demo
//! site runs) and the operator's status page (`/status` and its data `/status.json`; only when
//! an operator key is configured). Each page is one readable HTML file with its script inline,
//! embedded in the binary: no build step, nothing fetched from elsewhere.
//!
//! The operator key is accepted as `?key=` (how the page is opened) or as
//! `Authorization: Bearer <key>` (how the page then asks for its data, so the key does not ride
//! in every polled URL). A wrong or missing key is `401`; no key configured is the ordinary 404,
//! as if the routes did not exist. The key is never logged.

use std::time::Instant;

use super::engine::Gateway;
use super::routes::{Route, not_found, text_response};
use super::status::{
    ByProtocol, Connections, NodeEntry, NodeStatus, SiteStatus, StatusSnapshot, StoreStatus,
    node_id_hex,
};
use crate::net::{HttpRequest, HttpResponse, Method, Output, RequestId};
use crate::sio::Revision;
use crate::urlencoded;

/// The demo page: connects to the demo site with the socket.io-client bundle Courier serves
/// and shows every event; sends through `POST /send`.
pub const DEMO_PAGE: &str = include_str!("pages/demo.html");
/// The status page: polls `/status.json` every second and draws the rates.
pub const STATUS_PAGE: &str = include_str!("pages/status.html");

/// The pages' content security policy: their own inline script and style, requests to this
/// origin only (HTTP and WebSocket), no plugins, no framing. A message shown on the demo page is
/// only ever text, and this keeps a mistake from reaching anywhere else.
const CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                   style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `401` text for a missing or wrong operator key.
pub const ADMIN_KEY_INVALID: &str = "Admin key invalid.";

impl Gateway {
    /// Answers `/`, `/demo`, `/status` or `/status.json`.
    pub(super) fn serve_page(
        &mut self,
        id: RequestId,
        page: Route,
        request: &HttpRequest,
        now: Instant,
    ) {
        let enabled = match page {
            Route::Demo => self.config.sites.iter().any(|site| site.demo),
            _ => self.config.admin_key.is_some(),
        };
        if !enabled {
            self.respond(id, not_found(&request.method, &request.path));
            return;
        }
        if page != Route::Demo && !self.admin_key_matches(request) {
            self.respond(
                id,
                text_response(401, "text/plain; charset=utf-8", ADMIN_KEY_INVALID),
            );
            return;
        }
        let html = match page {
            Route::Demo => DEMO_PAGE,
            Route::Status => STATUS_PAGE,
            _ => {
                let snapshot = self.status_snapshot(now);
                self.push(Output::Status(id, Box::new(snapshot)));
                return;
            }
        };
        let mut response = page_response(200, "text/html; charset=utf-8", html);
        if request.method == Method::Head {
            response.body = bytes::Bytes::new();
        }
        self.respond(id, response);
    }

    fn admin_key_matches(&self, request: &HttpRequest) -> bool {
        let Some(key) = &self.config.admin_key else {
            return false;
        };
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|value| value.strip_prefix("Bearer "));
        match bearer {
            Some(given) => key.matches(given.trim()),
            None => {
                urlencoded::first(&request.query, "key").is_some_and(|given| key.matches(&given))
            }
        }
    }

    /// What this node can tell about itself at `now`. The runtime, version, memory and CPU are
    /// the adapter's to fill in; see [`Output::Status`].
    pub fn status_snapshot(&self, now: Instant) -> StatusSnapshot {
        let timestamp_ms = self.unix_ms(now);
        let id = node_id_hex(self.options.node_id);
        let mut sites: Vec<SiteStatus> = self
            .config
            .sites
            .iter()
            .map(|site| SiteStatus {
                name: site.name.clone(),
                connections: Connections::default(),
                totals: self.counters.site(&site.name),
            })
            .collect();
        for (socket, site) in self.clients.admitted() {
            let Some(entry) = sites.iter_mut().find(|entry| entry.name == site) else {
                continue;
            };
            let (Some(polling), Some(revision)) =
                (self.sio.is_polling(socket), self.sio.revision(socket))
            else {
                continue;
            };
            let transport = if polling {
                &mut entry.connections.polling
            } else {
                &mut entry.connections.websocket
            };
            count_revision(transport, revision);
        }
        let store = self.counters.store;
        StatusSnapshot {
            timestamp_ms,
            node: NodeStatus {
                id: id.clone(),
                runtime: String::new(),
                version: String::new(),
                uptime_seconds: self.started.map_or(0, |started| {
                    now.saturating_duration_since(started).as_secs()
                }),
                ready: true,
                store: if self.config.redis.is_some() {
                    "redis"
                } else {
                    "memory"
                },
                resident_bytes: None,
                cpu_seconds: None,
            },
            nodes: vec![NodeEntry {
                id,
                is_self: true,
                last_heartbeat_ms: timestamp_ms,
            }],
            sites,
            store: StoreStatus {
                commands: store.commands,
                failures: store.failures,
                timeouts: store.timeouts,
                reachable: store.reachable,
                latency_ms: None,
            },
        }
    }
}

fn count_revision(counts: &mut ByProtocol, revision: Revision) {
    match revision {
        Revision::V4 => counts.eio3 += 1,
        Revision::V5 => counts.eio4 += 1,
    }
}

/// A page or its data, never cached (the key opens it) and never framed.
fn page_response(status: u16, content_type: &str, body: &'static str) -> HttpResponse {
    let mut response = text_response(status, content_type, body);
    secure(&mut response);
    response
}

fn secure(response: &mut HttpResponse) {
    let headers = &mut response.headers;
    headers.push("cache-control", "no-store");
    headers.push("content-security-policy", CSP);
    headers.push("x-content-type-options", "nosniff");
    headers.push("referrer-policy", "no-referrer");
}

/// `/status.json`'s answer for a completed snapshot (the adapter calls it after filling in what
/// only it knows).
pub fn status_response(snapshot: &StatusSnapshot) -> HttpResponse {
    let body = serde_json::to_vec(snapshot).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = text_response(200, "application/json; charset=utf-8", body);
    secure(&mut response);
    response
}
