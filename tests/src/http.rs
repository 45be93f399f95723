//! A raw HTTP/1.1 client on std::net: exactly the bytes a test means to send, and the status,
//! headers and body that came back, without a client library normalising either.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What the server answered.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked), lossily decoded as UTF-8.
    pub body: String,
    /// The body's raw bytes.
    pub raw_body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The media type without parameters, lower-cased: `text/plain; charset=utf-8` → `text/plain`.
    pub fn media_type(&self) -> Option<String> {
        self.content_type().map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// `POST /send?<query>` with the given `Content-Type` (none when `None`) and body.
pub fn send(port: u16, query: &str, content_type: Option<&str>, body: &str) -> HttpResponse {
    let target = if query.is_empty() {
        "/send".to_string()
    } else {
        format!("/send?{query}")
    };
    let mut headers = Vec::new();
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    http(port, "POST", &target, &headers, body.as_bytes())
}

/// `POST /send?site=<site>&apiKey=<api_key>[&<extra_query>]` with a JSON body.
pub fn send_json(
    port: u16,
    site: &str,
    api_key: &str,
    extra_query: &str,
    body: &serde_json::Value,
) -> HttpResponse {
    let mut query = format!("site={site}&apiKey={api_key}");
    if !extra_query.is_empty() {
        query.push('&');
        query.push_str(extra_query);
    }
    send(port, &query, Some("application/json"), &body.to_string())
}

/// One request to `127.0.0.1:port`, `Connection: close`; panics if the exchange fails at the
/// TCP or HTTP-syntax level (a status code, any status code, is a success here).
pub fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    try_http(port, method, target, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

/// Writes `request` to `127.0.0.1:port` exactly as given (a head without its body, a chunked
/// body cut short…), then reads the answer until the server closes; panics when there is none.
/// A server may answer before it has read everything (a 413 or 503 refuses the body unread),
/// so a failed write still waits for the answer.
pub fn raw_request(port: u16, request: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let written = stream.write_all(request);
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A reset after a complete response is still a complete response.
        assert!(!raw.is_empty(), "no answer: {e} (write: {written:?})");
    }
    parse_response(&raw, false)
        .unwrap_or_else(|e| panic!("{e}; raw answer: {:?}", String::from_utf8_lossy(&raw)))
}

/// [`http`] without the panic.
pub(crate) fn try_http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    let sends_body = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if sends_body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .map_err(|e| format!("{method} {target}: write failed: {e}"))?;
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A reset after a complete response is still a complete response.
        if raw.is_empty() {
            return Err(format!("{method} {target}: read failed: {e}"));
        }
    }
    parse_response(&raw, method == "HEAD").map_err(|e| {
        format!(
            "{method} {target}: {e}; raw answer: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Parses a complete HTTP/1.1 response (`head_only` for the answer to a `HEAD`).
pub fn parse_response(raw: &[u8], head_only: bool) -> Result<HttpResponse, String> {
    let split = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let raw_body = if head_only {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length")?;
        rest.get(..len)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&raw_body).into_owned(),
        raw_body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find(data, b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn parses_chunked_and_sized_bodies() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n2\r\nOK\r\n3\r\n!!!\r\n0\r\n\r\n";
        let r = parse_response(chunked, false).expect("chunked parses");
        assert_eq!((r.status, r.body.as_str()), (200, "OK!!!"));
        assert_eq!(r.media_type().as_deref(), Some("text/plain"));

        let sized =
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 15\r\n\r\nApiKey invalid.trailing";
        let r = parse_response(sized, false).expect("sized parses");
        assert_eq!((r.status, r.body.as_str()), (401, "ApiKey invalid."));

        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\n", false).is_err(),
            "no end of headers"
        );
        assert!(
            parse_response(b"garbage\r\n\r\n", false).is_err(),
            "no status"
        );
    }
}
