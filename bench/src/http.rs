//! The benchmark's HTTP/1.1 both ways: a kept-alive client connection for `/send` (a site
//! posts many on one connection), one-shot `GET`s for `/metrics`, and the stub site whose
//! `authUrl` the gateway calls on every join (kept alive too, as a site's backend would be).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::wire;

/// Largest answer read (a `/metrics` text is a few kB; a `/send` answer a few bytes).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// One kept-alive connection to the gateway: requests one after another, each answer framed
/// by its content-length.
#[derive(Debug)]
pub struct KeepAlive {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl KeepAlive {
    /// Connects to the gateway on 127.0.0.1:`port`.
    pub async fn connect(port: u16) -> Result<KeepAlive, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|error| format!("HTTP connect: {error}"))?;
        stream
            .set_nodelay(true)
            .map_err(|error| format!("HTTP connect: {error}"))?;
        Ok(KeepAlive {
            stream,
            buffer: Vec::new(),
        })
    }

    /// Sends `request` whole and reads its answer: `(status, body)`.
    pub async fn request(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|error| format!("HTTP write: {error}"))?;
        loop {
            if let Some((head_len, length)) = wire::http_framing(&self.buffer)
                && self.buffer.len() >= head_len + length
            {
                let status = wire::http_status(&self.buffer).ok_or_else(|| {
                    format!(
                        "not an HTTP answer: {}",
                        String::from_utf8_lossy(&self.buffer[..head_len])
                    )
                })?;
                let body = self.buffer[head_len..head_len + length].to_vec();
                self.buffer.drain(..head_len + length);
                return Ok((status, body));
            }
            if self.buffer.len() > MAX_ANSWER {
                return Err("HTTP answer too large".to_owned());
            }
            let mut chunk = [0_u8; 16 * 1024];
            let read = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|error| format!("HTTP read: {error}"))?;
            if read == 0 {
                return Err("HTTP: the gateway closed the connection".to_owned());
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// `POST /send` of `body` to `site`; `Err` unless the answer is 200.
    pub async fn send(&mut self, site: &str, api_key: &str, body: &str) -> Result<(), String> {
        let request = wire::send_request_keep_alive(site, api_key, body);
        match self.request(request.as_bytes()).await? {
            (200, _) => Ok(()),
            (status, answer) => Err(format!(
                "/send answered {status}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(500)])
            )),
        }
    }
}

/// `GET <path>` on a fresh connection: the body, `Err` unless the answer is 200.
pub async fn get(port: u16, path: &str) -> Result<String, String> {
    let mut connection = KeepAlive::connect(port).await?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    match tokio::time::timeout(
        Duration::from_secs(30),
        connection.request(request.as_bytes()),
    )
    .await
    .map_err(|_| format!("GET {path}: no answer in time"))??
    {
        (200, body) => Ok(String::from_utf8_lossy(&body).into_owned()),
        (status, _) => Err(format!("GET {path} answered {status}")),
    }
}

/// The gateway's driver counters: busy seconds (wall clock) and the CPU seconds of those busy
/// spells (`None` for a build that does not export them).
pub async fn driver_seconds(port: u16) -> Result<Option<[f64; 2]>, String> {
    let text = get(port, "/metrics").await?;
    let busy = wire::metric_value(&text, "courier_driver_busy_seconds_total");
    let cpu = wire::metric_value(&text, "courier_driver_cpu_seconds_total");
    Ok(busy.zip(cpu).map(|(busy, cpu)| [busy, cpu]))
}

/// The stub site: answers every auth call with token `t` as `["<prefix><t>", "<group>"]` on
/// kept-alive connections. Stops when the returned task is aborted.
pub async fn start_auth_stub(
    user_room_prefix: String,
    group: String,
) -> Result<(u16, JoinHandle<()>), String> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|error| format!("stub site: bind: {error}"))?;
    let port = listener
        .local_addr()
        .map_err(|error| format!("stub site: {error}"))?
        .port();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (prefix, group) = (user_room_prefix.clone(), group.clone());
            connections.spawn(serve_auth(stream, prefix, group));
            // Reap the finished ones so the set does not grow with every connection.
            while connections.try_join_next().is_some() {}
        }
    });
    Ok((port, task))
}

async fn serve_auth(mut stream: TcpStream, prefix: String, group: String) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8 * 1024];
    loop {
        while let Some((head_len, length)) = wire::http_framing(&buffer)
            && buffer.len() >= head_len + length
        {
            let head = String::from_utf8_lossy(&buffer[..head_len]).into_owned();
            buffer.drain(..head_len + length);
            let answer = wire::auth_response(&head, &prefix, &group);
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
        if buffer.len() > MAX_ANSWER {
            return;
        }
    }
}
