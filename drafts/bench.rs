//! `courier-bench`: measures a running Courier (started with `--demo`) from the outside.
//!
//! 1. Opens N Engine.IO 4 WebSocket clients to the demo site (each its own user, all in the
//!    demo group room `staff`), waits until every one is admitted, and reports the server's
//!    resident memory before and after, per connection (Linux `/proc/<pid>/status`).
//! 2. Sends M messages to `staff` through `POST /send` one after the other, each waiting until
//!    all N clients received (and acknowledged) it, and reports deliveries per second.
//!
//! Not a test: it asserts nothing. `scripts/bench` runs it against both binaries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::compat::TokioAsyncReadCompatExt;

#[derive(Debug, Parser)]
#[command(about = "Idle memory per connection and /send fan-out of a running courier --demo")]
struct Args {
    /// Port of the gateway on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Pid of the gateway, for its RSS.
    #[arg(long)]
    pid: u32,
    /// Clients to connect.
    #[arg(long, default_value_t = 1000)]
    clients: u64,
    /// Messages to fan out.
    #[arg(long, default_value_t = 20)]
    sends: u64,
    /// The demo site's apiKey.
    #[arg(long, default_value = "demo")]
    api_key: String,
    /// Label for the result line.
    #[arg(long, default_value = "courier")]
    label: String,
}

#[derive(Default)]
struct Shared {
    admitted: AtomicU64,
    delivered: AtomicU64,
    changed: Notify,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

async fn client(port: u16, index: u64, shared: Arc<Shared>) -> Result<(), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = async_tungstenite::client_async(url, stream.compat())
        .await
        .map_err(|e| e.to_string())?;
    let mut admitted = false;
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message.map_err(|e| e.to_string())? else {
            continue;
        };
        let text = text.as_str();
        if text.starts_with('0') {
            let connect = format!(r#"40/demo,{{"token":"bench{index}","deviceId":"d"}}"#);
            ws.send(Message::text(connect)).await.map_err(|e| e.to_string())?;
        } else if text == "2" {
            ws.send(Message::text("3")).await.map_err(|e| e.to_string())?;
        } else if let Some(rest) = text.strip_prefix("42/demo,") {
            if rest.starts_with("[\"_settings\"") {
                if !admitted {
                    admitted = true;
                    shared.admitted.fetch_add(1, Ordering::Relaxed);
                    shared.changed.notify_waiters();
                }
                continue;
            }
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                ws.send(Message::text(format!("43/demo,{digits}[]")))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            shared.delivered.fetch_add(1, Ordering::Relaxed);
            shared.changed.notify_waiters();
        } else if text.starts_with("44") {
            return Err(format!("refused: {text}"));
        }
    }
    Ok(())
}

async fn wait_until(shared: &Shared, counter: impl Fn(&Shared) -> u64, target: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter(shared) < target {
        if Instant::now() > deadline {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), shared.changed.notified()).await;
    }
    true
}

async fn send(port: u16, api_key: &str, n: u64) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = format!(r#"{{"rooms":["staff"],"event":"bench","args":[{n}]}}"#);
    let request = format!(
        "POST /send?site=demo&apiKey={api_key} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&answer).into_owned())
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let shared = Arc::new(Shared::default());
    let before = rss_kib(args.pid);
    for index in 0..args.clients {
        let shared = shared.clone();
        let port = args.port;
        tokio::spawn(async move {
            if let Err(error) = client(port, index, shared).await {
                eprintln!("client {index}: {error}");
            }
        });
        if index % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if !wait_until(&shared, |s| s.admitted.load(Ordering::Relaxed), args.clients).await {
        return Err(format!(
            "only {} of {} clients admitted",
            shared.admitted.load(Ordering::Relaxed),
            args.clients
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(args.pid);
    let per_connection = (after.saturating_sub(before) as f64 * 1024.0) / args.clients as f64;

    let started = Instant::now();
    for n in 0..args.sends {
        send(args.port, &args.api_key, n).await?;
        let target = (n + 1) * args.clients;
        if !wait_until(&shared, |s| s.delivered.load(Ordering::Relaxed), target).await {
            return Err(format!("send {n}: only {} deliveries", shared.delivered.load(Ordering::Relaxed)));
        }
    }
    let elapsed = started.elapsed();
    let deliveries = args.clients * args.sends;
    println!(
        "{}: {} clients: idle RSS {:.1} KiB/connection ({} KiB -> {} KiB); {} deliveries in {:.2} s = {:.0} deliveries/s",
        args.label,
        args.clients,
        per_connection / 1024.0,
        before,
        after,
        deliveries,
        elapsed.as_secs_f64(),
        deliveries as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
