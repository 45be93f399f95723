//! Which part of the gateway answers an HTTP request: the client bundle and Engine.IO under
//! `io.path`, then the gateway's own routes (`/send`, `/healthcheck`, `OPTIONS /send`, the
//! demo and status pages, 404).

use std::time::Instant;

use super::client_bundle;
use super::engine::Gateway;
use super::routes::{Route, fixed_response, not_found, route};
use super::send::parse_send;

use crate::eio;
use crate::net::{AppEvent, HttpRequest, Level, Method, RequestId};

impl Gateway {
    /// Answers, or hands on, one HTTP request.
    pub(super) fn route_http(&mut self, id: RequestId, request: HttpRequest, now: Instant) {
        let bundle_request = self.config.io.serve_client
            && matches!(request.method, Method::Get | Method::Head)
            && !request.websocket;
        let bundle = bundle_request
            .then(|| {
                client_bundle::match_target(&self.io_path_slash, &request.path, &request.query)
            })
            .flatten();
        if let Some(file) = bundle {
            let head = request.method == Method::Head;
            let response = client_bundle::respond(file, request.headers.get("if-none-match"), head);
            self.respond(id, response);
            return;
        }
        if self.sio.matches_path(&request.path) {
            let origin = request
                .headers
                .get("origin")
                .or_else(|| request.headers.get("referer"));
            if !self.config.io.origins.allows(origin) {
                self.event(
                    AppEvent::new(Level::Info, "Origin refused")
                        .with("origin", origin.unwrap_or("").to_owned()),
                );
                self.respond(id, eio::forbidden_response());
                return;
            }
            self.sio.handle_http(id, request, now);
            return;
        }
        match route(&request.method, &request.path) {
            Route::Send => self.handle_send(id, &request, now),
            page @ (Route::Demo | Route::Status | Route::StatusJson) => {
                self.serve_page(id, page, &request, now);
            }
            other => {
                let response = fixed_response(other, &request.method, &request.path)
                    .unwrap_or_else(|| not_found(&request.method, &request.path));
                self.respond(id, response);
            }
        }
    }

    fn handle_send(&mut self, id: RequestId, request: &HttpRequest, now: Instant) {
        let content_type = request.headers.get("content-type");
        match parse_send(
            &self.config,
            &request.query,
            content_type,
            &request.body,
            request.body_truncated,
        ) {
            Ok(send) => self.dispatch_send(id, send, now),
            Err(response) => {
                let reason = String::from_utf8_lossy(&response.body).into_owned();
                self.event(
                    AppEvent::new(Level::Error, "Send refused")
                        .with("status", u64::from(response.status))
                        .with("reason", reason),
                );
                self.respond(id, response);
            }
        }
    }
}
