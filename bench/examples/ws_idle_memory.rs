//! Measures the resident memory one idle WebSocket connection costs a server (the
//! budget, see BENCHMARKS.md: ≤ 12 KB RSS per idle connection).
//!
//! ```text
//! cargo run --release -p courier-bench --example ws_idle_memory -- --runtime smol -n 5000
//! cargo run --release -p courier-bench --example ws_idle_memory -- --attach 127.0.0.1:1337 \
//!     --pid 4242 --path '/socket.io/?EIO=4&transport=websocket' -n 5000
//! # a real gateway (`courier-tokio --demo --bind 127.0.0.1`): one user per connection, each
//! # joined to the demo site's namespace, so the store holds a device per connection too
//! cargo run --release -p courier-bench --example ws_idle_memory -- --attach 127.0.0.1:1337 \
//!     --pid 4242 --path '/socket.io/?EIO=4&transport=websocket&token=u{n}&deviceId=d{n}' \
//!     --send '40/demo,' -n 3000
//! ```
//!
//! `{n}` in `--path` and `--send` becomes the connection's number. `--send` is a text frame each
//! client sends right after its handshake (a Socket.IO namespace connect, say).
//!
//! Without `--attach` it starts itself as the server (`--serve tokio|smol`, an engine that
//! accepts every WebSocket and stays silent), opens a warm-up batch of connections, reads the
//! server's VmRSS, opens `n` more idle connections, waits, reads VmRSS again and prints the
//! difference per connection. The clients are raw sockets in this process, so they cost the
//! server nothing but the connection itself.

// A command-line tool: its result is what it prints.
#![allow(clippy::print_stdout)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use courier_core::net::{
    ConnId, Engine, Headers, HttpRequest, HttpResponse, Output, RequestId, WsFrame,
};

const WARM_UP: usize = 200;
const GREETING: &[u8] = br#"0{"sid":"AAAAAAAAAAAAAAAAAAAA","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

/// Accepts every WebSocket upgrade and greets it with one ~100-byte text frame (as an Engine.IO
/// open packet would); 404 for anything else; ignores frames.
#[derive(Default)]
struct IdleEngine {
    outputs: VecDeque<Output>,
}

impl Engine for IdleEngine {
    fn handle_wall_clock(&mut self, _unix_ms: u64, _now: Instant) {}

    fn handle_http(&mut self, id: RequestId, request: HttpRequest, _now: Instant) {
        if request.websocket {
            self.outputs.push_back(Output::WsAccept(id));
            self.outputs.push_back(Output::WsSend(
                ConnId::from(id),
                WsFrame::Text(bytes::Bytes::from_static(GREETING)),
            ));
        } else {
            self.outputs.push_back(Output::HttpResponse(
                id,
                HttpResponse {
                    status: 404,
                    headers: Headers::default(),
                    body: bytes::Bytes::from_static(b"not found"),
                },
            ));
        }
    }

    fn handle_http_aborted(&mut self, _id: RequestId, _now: Instant) {}
    fn handle_ws_frame(&mut self, _conn: ConnId, _frame: WsFrame, _now: Instant) {}
    fn handle_ws_closed(&mut self, _conn: ConnId, _now: Instant) {}
    fn handle_timeout(&mut self, _now: Instant) {}
    fn handle_store_result(
        &mut self,
        _id: courier_core::net::StoreCmdId,
        _result: courier_core::gateway::store::StoreResult,
        _now: Instant,
    ) {
    }
    fn handle_call_result(
        &mut self,
        _id: courier_core::net::CallId,
        _result: courier_core::net::CallResult,
        _now: Instant,
    ) {
    }
    fn handle_remote(&mut self, _message: bytes::Bytes, _now: Instant) {}

    fn poll_output(&mut self) -> Output {
        self.outputs.pop_front().unwrap_or(Output::Idle(None))
    }
}

struct Options {
    runtime: String,
    serve: Option<String>,
    attach: Option<SocketAddr>,
    pid: Option<u32>,
    path: String,
    send: Option<String>,
    connections: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        runtime: "tokio".into(),
        serve: None,
        attach: None,
        pid: None,
        path: "/".into(),
        send: None,
        connections: 2000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--runtime" => options.runtime = value()?,
            "--serve" => options.serve = Some(value()?),
            "--attach" => options.attach = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--pid" => options.pid = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--path" => options.path = value()?,
            "--send" => options.send = Some(value()?),
            "-n" => options.connections = value()?.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ws_idle_memory: {message}");
            return ExitCode::from(2);
        }
    };
    if let Some(runtime) = &options.serve {
        return serve(runtime);
    }
    match measure(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ws_idle_memory: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Child mode: serve the idle engine on a free port and print it.
fn serve(runtime: &str) -> ExitCode {
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    fn run<R: courier_io::Runtime>(runtime: R, bind: SocketAddr) -> ExitCode {
        let rt = runtime.clone();
        rt.block_on(async move {
            let setup = courier_io::Setup {
                max_payload: courier_io::DEFAULT_MAX_PAYLOAD,
                store: courier_io::StoreSetup::None,
                node_ids: vec![0],
                first_log_line: "ws_idle_memory server".into(),
                limits: courier_io::Limits::default(),
                ops: courier_io::OpsSetup::default(),
            };
            let running = match courier_io::start(
                runtime.clone(),
                vec![Box::new(IdleEngine::default())],
                setup,
                bind,
            )
            .await
            {
                Ok(running) => running,
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::FAILURE;
                }
            };
            println!("PORT {}", running.local_addr().port());
            let _ = std::io::stdout().flush();
            running.run_until(runtime.shutdown_signal()).await;
            ExitCode::SUCCESS
        })
    }
    match runtime {
        "tokio" => match courier_tokio::TokioRuntime::new() {
            Ok(rt) => run(rt, bind),
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        "smol" => run(courier_smol::SmolRuntime::new(), bind),
        other => {
            eprintln!("unknown runtime {other}");
            ExitCode::from(2)
        }
    }
}

fn measure(options: &Options) -> Result<(), String> {
    let (addr, pid, mut child) = match (options.attach, options.pid) {
        (Some(addr), Some(pid)) => (addr, pid, None),
        (Some(_), None) => return Err("--attach needs --pid".into()),
        _ => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut child = Command::new(exe)
                .args(["--serve", &options.runtime])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start the server: {e}"))?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            let port: u16 = line
                .trim()
                .strip_prefix("PORT ")
                .and_then(|p| p.parse().ok())
                .ok_or(format!("unexpected server output {line:?}"))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            (addr, child.id(), Some(child))
        }
    };
    let mut sockets = Vec::with_capacity(WARM_UP + options.connections);
    for n in 0..WARM_UP {
        sockets.push(open(addr, options, n)?);
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid)?;
    for n in WARM_UP..WARM_UP + options.connections {
        sockets.push(open(addr, options, n)?);
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid)?;
    let per_connection =
        (after.saturating_sub(before) as f64) * 1024.0 / options.connections as f64;
    println!(
        "runtime={} connections={} rss_before={}KiB rss_after={}KiB per_connection={:.0}B ({:.1} KiB)",
        if options.attach.is_some() {
            "attached"
        } else {
            &options.runtime
        },
        options.connections,
        before,
        after,
        per_connection,
        per_connection / 1024.0
    );
    drop(sockets);
    if let Some(child) = child.as_mut() {
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
    Ok(())
}

/// Opens WebSocket number `n` with a raw handshake, sends `--send` if given, and leaves it idle.
fn open(addr: SocketAddr, options: &Options, n: usize) -> Result<TcpStream, String> {
    let path = options.path.replace("{n}", &n.to_string());
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .map_err(|e| format!("handshake: {e}"))?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(&head)
        ));
    }
    if let Some(text) = &options.send {
        let frame = masked_text_frame(text.replace("{n}", &n.to_string()).as_bytes());
        stream.write_all(&frame).map_err(|e| e.to_string())?;
    }
    Ok(stream)
}

/// A client-to-server text frame (clients must mask; the mask may be any value).
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS".into())
}
