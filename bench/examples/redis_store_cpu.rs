//! Measures the redis-server CPU the Redis store spends per delivery, from `/proc/<pid>/stat`
//! (utime + stime of the redis-server it starts), with the command stream a gateway emits:
//!
//! - `group`: `users` users (one device each, all in group `staff`) connect; then each of
//!   `sends` rounds is one `ResolveGroups` and one `Enqueue` per user reached through the group
//!   (sent in batches of `--enqueue-batch`, as the gateway's store loop takes up to 256 commands
//!   per pipeline), then one `Ack` per delivery (in batches of `--ack-batch`: acks arrive spread
//!   over time, so their batches are smaller).
//! - `user`: the same users; each round sends to every user by its own room (`Enqueue` without
//!   groups) in batches of `--enqueue-batch`, then acks.
//! - `join`: CPU per `Connect` (with groups) of a fresh device.
//!
//! ```text
//! cargo run --release -p courier-bench --example redis_store_cpu -- \
//!     --mode group --users 1000 --sends 200
//! ```
//!
//! Not a test: it prints figures. Bounded: it stops after the rounds asked for.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::TcpListener;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use courier_core::gateway::store::{
    BatchLimits, DeviceKey, QueuedItem, SocketRef, StoreCommand, StoreResult,
};
use courier_io::{RedisStore, Runtime};

#[derive(Debug, Parser)]
struct Args {
    /// `group`, `user` or `join`.
    #[arg(long, default_value = "group")]
    mode: String,
    #[arg(long, default_value_t = 1000)]
    users: u64,
    #[arg(long, default_value_t = 200)]
    sends: u64,
    #[arg(long, default_value_t = 256)]
    enqueue_batch: usize,
    #[arg(long, default_value_t = 64)]
    ack_batch: usize,
    /// Shards per site (the `redis.shards` setting).
    #[arg(long, default_value_t = 0)]
    shards: u32,
    /// An existing redis-server to use (its pid for the CPU reading) instead of starting one.
    #[arg(long)]
    redis_pid: Option<u32>,
    #[arg(long)]
    redis_port: Option<u16>,
}

struct Redis {
    child: Option<Child>,
    pid: u32,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_redis(args: &Args) -> Result<Redis, String> {
    if let (Some(pid), Some(port)) = (args.redis_pid, args.redis_port) {
        return Ok(Redis {
            child: None,
            pid,
            port,
        });
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Redis {
        child: Some(child),
        pid,
        port,
    })
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

const SITE: &str = "bench";
const T0: u64 = 1_790_000_000_000;

fn device(user: u64) -> DeviceKey {
    DeviceKey {
        site: SITE.into(),
        room: format!("user_{user}"),
        device: "d1".into(),
    }
}

async fn run_batches(store: &RedisStore, commands: Vec<StoreCommand>, batch: usize) -> usize {
    let mut failed = 0;
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        let chunk: Vec<StoreCommand> = commands.by_ref().take(batch.max(1)).collect();
        for result in store.execute_batch(chunk).await {
            if let StoreResult::Failed(error) = &result {
                if failed == 0 {
                    eprintln!("failed: {error}");
                }
                failed += 1;
            }
        }
    }
    failed
}

fn main() -> ExitCode {
    let args = Args::parse();
    let redis = match start_redis(&args) {
        Ok(redis) => redis,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = courier_tokio::TokioRuntime::new().expect("tokio runtime");
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let store = if args.shards == 0 {
        RedisStore::open_in(&runtime, &url, "courier")
    } else {
        RedisStore::open_sharded_in(&runtime, &url, "courier", args.shards)
    }
    .expect("store");
    let failed = runtime.block_on(measure(&args, &store, redis.pid));
    if failed > 0 {
        eprintln!("{failed} commands failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn measure(args: &Args, store: &RedisStore, pid: u32) -> usize {
    let limits = BatchLimits::for_max_payload(1_000_000);
    let connects = |now: u64, sock: u64| -> Vec<StoreCommand> {
        (0..args.users)
            .map(|user| StoreCommand::Connect {
                device: device(user),
                socket: SocketRef {
                    node: 1,
                    socket: sock + user,
                },
                groups: Some(vec!["staff".into()]),
                limits,
                now_ms: now,
            })
            .collect()
    };
    let mut failed = 0;
    let before = cpu_seconds(pid);
    let started = Instant::now();
    failed += run_batches(store, connects(T0, 0), args.enqueue_batch).await;
    let join_cpu = cpu_seconds(pid) - before;
    if args.mode == "join" {
        // A second join of every device (it has a record now: the steady state).
        let before = cpu_seconds(pid);
        failed += run_batches(store, connects(T0 + 1, args.users), args.enqueue_batch).await;
        let again = cpu_seconds(pid) - before;
        println!(
            "join: {} joins, redis CPU {:.1} µs per first join, {:.1} µs per rejoin",
            args.users,
            join_cpu * 1e6 / args.users as f64,
            again * 1e6 / args.users as f64
        );
        return failed;
    }
    let via = args.mode == "group";
    let before = cpu_seconds(pid);
    let started_sends = Instant::now();
    let mut deliveries = 0u64;
    for send in 0..args.sends {
        let id = (T0 + send) << 22;
        let now = T0 + 10 + send;
        let json = Bytes::from(format!(
            "[\"bench\",{{\"n\":{send},\"text\":\"a message of a typical size, some sixty bytes long\"}}]"
        ));
        let item = QueuedItem {
            id,
            event: "bench".into(),
            json,
        };
        if via {
            failed += run_batches(
                store,
                vec![StoreCommand::ResolveGroups {
                    site: SITE.into(),
                    groups: vec!["staff".into()],
                    now_ms: now,
                }],
                1,
            )
            .await;
        }
        let enqueues = (0..args.users)
            .map(|user| StoreCommand::Enqueue {
                site: SITE.into(),
                room: format!("user_{user}"),
                item: item.clone(),
                via_groups: via.then(|| vec!["staff".to_owned()]),
                now_ms: now,
            })
            .collect();
        failed += run_batches(store, enqueues, args.enqueue_batch).await;
        let acks = (0..args.users)
            .map(|user| StoreCommand::Ack {
                device: device(user),
                event: "bench".into(),
                id,
                resync: false,
                now_ms: now,
            })
            .collect();
        failed += run_batches(store, acks, args.ack_batch).await;
        deliveries += args.users;
    }
    let cpu = cpu_seconds(pid) - before;
    println!(
        "{}: {} deliveries in {:.1} s; redis-server CPU {:.2} s = {:.2} µs per delivery \
         (enqueue batch {}, ack batch {}); joins {:.1} µs each; total {:.1} s",
        args.mode,
        deliveries,
        started_sends.elapsed().as_secs_f64(),
        cpu,
        cpu * 1e6 / deliveries as f64,
        args.enqueue_batch,
        args.ack_batch,
        join_cpu * 1e6 / args.users as f64,
        started.elapsed().as_secs_f64()
    );
    failed
}
