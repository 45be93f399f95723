//! What the behaviour scenarios share: the site they run against and the moves every scenario
//! makes (connect a user's device, push a message through `/send`).
//!
//! Each `behaviour_*.rs` is its own test crate and uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use courier_tests::{
    Bin, Client, Gateway, GatewayBuilder, HttpResponse, Lib, Site, StubSite, Transports, Value,
    send_json,
};

/// The site of every single-site scenario (the original's GoodCity).
pub const SITE: &str = "goodcity";
/// Its namespace.
pub const NS: &str = "/goodcity";
/// How long "nothing arrives" is watched for. Long enough for a wrong message to show up on a
/// loaded 2-core CI machine, short enough to keep the suite quick.
pub const QUIET: Duration = Duration::from_millis(700);

/// A gateway builder for [`SITE`] in user-room mode (prefix `user_`) against `stub`.
pub fn user_site(bin: Bin, stub: &StubSite) -> GatewayBuilder {
    Gateway::builder(bin).site(Site::for_stub(SITE, stub))
}

/// A client of [`NS`] with `token` and `deviceId` in the handshake query.
pub fn client(gw: &Gateway, lib: Lib, transports: Transports, token: &str, device: &str) -> Client {
    Client::builder(lib, transports)
        .namespace(NS)
        .token(token)
        .device(device)
        .connect(gw.port())
}

/// [`client`], then waits for connect and `_settings`.
pub fn connected(
    gw: &Gateway,
    lib: Lib,
    transports: Transports,
    token: &str,
    device: &str,
) -> Client {
    let mut c = client(gw, lib, transports, token, device);
    c.expect_connected();
    c
}

/// `POST /send` to [`SITE`] with a JSON body; asserts `200 text/plain OK`.
pub fn push(gw: &Gateway, body: Value) {
    push_with(gw, "", body);
}

/// [`push`] with extra query parameters (e.g. `resync=true`).
pub fn push_with(gw: &Gateway, extra_query: &str, body: Value) {
    let r = send_json(gw.port(), SITE, Site::API_KEY, extra_query, &body);
    assert_ok(&r);
}

/// Asserts the `/send` success answer: `200`, `text/plain`, body `OK`.
pub fn assert_ok(r: &HttpResponse) {
    assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{r:?}");
    assert_eq!(r.media_type().as_deref(), Some("text/plain"), "{r:?}");
}

/// Asserts a client-input refusal: `400 text/plain` with a non-empty explanation (README Differences
/// #10: never a 500, never an HTML stack trace).
pub fn assert_clear_400(r: &HttpResponse) {
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.media_type().as_deref(), Some("text/plain"), "{r:?}");
    assert!(!r.body.trim().is_empty(), "a 400 names the problem: {r:?}");
    assert!(!r.body.contains("<html"), "no HTML error page: {r:?}");
}

/// Disconnects (client side, waiting for the library's disconnect event), closes the driver and
/// connects the same (user, device) again with the same library and transports. The new
/// connection may reach the gateway before it has processed the old one's end: the latest
/// socket must win either way.
pub fn reconnect(gw: &Gateway, mut c: Client, token: &str, device: &str) -> Client {
    let (lib, transports) = (c.lib(), c.transports());
    c.disconnect();
    c.close();
    client(gw, lib, transports, token, device)
}
