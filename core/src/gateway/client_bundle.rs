//! The socket.io-client 1.7.4 browser bundle, served as the original service served it
//! (socket.io 1.7.4 `serveClient`): `<path>socket.io.js` and `<path>socket.io.js.map`, matched by
//! prefix on the whole request target (so `?v=2` cache-busters work), `ETag: "1.7.4"`, and 304
//! when `If-None-Match` equals that tag.

use bytes::Bytes;

use crate::net::{Headers, HttpResponse};

const CLIENT_VERSION: &str = "1.7.4";
const SOURCE: &[u8] = include_bytes!("../../assets/socket.io-client-1.7.4/socket.io.min.js");
const SOURCE_MAP: &[u8] = include_bytes!("../../assets/socket.io-client-1.7.4/socket.io.js.map");

/// Which bundle file a request target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFile {
    /// The minified client, `socket.io.js`.
    Source,
    /// Its source map, `socket.io.js.map`.
    SourceMap,
}

/// Recognises a bundle request. `io_path` is the Engine.IO path with its trailing slash
/// (`/socket.io/`); `target` is the path plus `?query` as sent. The map is checked first because
/// its name extends the source's.
pub fn match_target(io_path: &str, path: &str, query: &str) -> Option<BundleFile> {
    let rest = path.strip_prefix(io_path)?;
    // socket.io 1.7.4 matched `req.url.indexOf(url) === 0` on the whole target, query included.
    let mut target = String::with_capacity(rest.len() + query.len() + 1);
    target.push_str(rest);
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    if target.starts_with("socket.io.js.map") {
        Some(BundleFile::SourceMap)
    } else if target.starts_with("socket.io.js") {
        Some(BundleFile::Source)
    } else {
        None
    }
}

/// The response for `file`, given the request's `If-None-Match` header.
pub fn respond(file: BundleFile, if_none_match: Option<&str>, head_only: bool) -> HttpResponse {
    let etag = format!("\"{CLIENT_VERSION}\"");
    if if_none_match == Some(etag.as_str()) {
        return HttpResponse {
            status: 304,
            headers: Headers::default(),
            body: Bytes::new(),
        };
    }
    let mut headers = Headers::default();
    let body = match file {
        BundleFile::Source => {
            headers.push("content-type", "application/javascript");
            headers.push("etag", etag);
            headers.push("x-sourcemap", "socket.io.js.map");
            Bytes::from_static(SOURCE)
        }
        BundleFile::SourceMap => {
            headers.push("content-type", "application/json");
            headers.push("etag", etag);
            Bytes::from_static(SOURCE_MAP)
        }
    };
    HttpResponse {
        status: 200,
        headers,
        body: if head_only { Bytes::new() } else { body },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_prefix_on_the_whole_target() {
        let m = |p, q| match_target("/socket.io/", p, q);
        assert_eq!(m("/socket.io/socket.io.js", ""), Some(BundleFile::Source));
        assert_eq!(
            m("/socket.io/socket.io.js", "v=2"),
            Some(BundleFile::Source)
        );
        assert_eq!(
            m("/socket.io/socket.io.js.map", ""),
            Some(BundleFile::SourceMap)
        );
        assert_eq!(m("/socket.io/", "EIO=3&transport=polling"), None);
        assert_eq!(m("/other/socket.io.js", ""), None);
    }

    #[test]
    fn serves_the_bundle_with_etag_and_answers_304_on_match() {
        let ok = respond(BundleFile::Source, None, false);
        assert_eq!(ok.status, 200);
        assert_eq!(ok.headers.get("etag"), Some("\"1.7.4\""));
        assert_eq!(
            ok.headers.get("content-type"),
            Some("application/javascript")
        );
        assert_eq!(ok.headers.get("x-sourcemap"), Some("socket.io.js.map"));
        assert!(ok.body.starts_with(b"!function(t,e){"));
        let map = respond(BundleFile::SourceMap, Some("\"1.7.3\""), false);
        assert_eq!(map.status, 200);
        assert_eq!(map.headers.get("content-type"), Some("application/json"));
        let cached = respond(BundleFile::Source, Some("\"1.7.4\""), false);
        assert_eq!(cached.status, 304);
        assert!(cached.body.is_empty());
    }
}
