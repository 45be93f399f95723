//! `courier-bench`: measures Courier from the outside.
//!
//! With `--gateway PATH` it runs the Redis-mode suite (module `suite`): it starts the gateway
//! itself against a given `redis-server` and reports CPU-seconds per operation of both.
//! Otherwise it measures a running Courier started with `--demo`:
//!
//! 1. Idle memory: opens N Engine.IO 4 WebSocket clients to the demo site, each its own user
//!    `<token-prefix><i>` (the demo site puts every user in the group room `staff` too), and
//!    reads the server's `VmRSS` (Linux `/proc/<pid>/status`) after a warm-up batch and after
//!    all N are admitted and settled: the growth divided by the clients admitted in between is
//!    the idle cost of one connection (the project's budget is ≤ 12 KB, BENCHMARKS.md).
//! 2. Group fan-out: M sequential `POST /send`s to `staff`, each waiting until every client
//!    received and acknowledged it: deliveries per second, and the p50/p99 time from the start
//!    of a `/send` until its last delivery.
//! 3. User-room fan-out: one `/send` naming every client's user room (as many as fit in one
//!    100 kB body), timed until the last delivery.
//!
//! Not a test: it asserts nothing about speed. It prints the details to stderr and one
//! Markdown table row to stdout; `scripts/bench` runs it against both binaries. Every phase
//! has a deadline, so it always ends.

// A command-line tool: its result is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod client;
mod gateway;
mod http;
mod stats;
mod suite;
mod wire;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::client::{BENCH_EVENT, ClientSpec, Fleet, Tally};

#[derive(Debug, Parser)]
#[command(
    about = "Idle memory per connection and /send fan-out throughput of a running `courier-* --demo`; \
             with --gateway, CPU per operation of a gateway it starts on Redis"
)]
struct Args {
    /// Port of the running `--demo` gateway on 127.0.0.1.
    #[arg(long, required_unless_present = "gateway")]
    port: Option<u16>,
    /// Process id of the running gateway, whose VmRSS is measured.
    #[arg(long, required_unless_present = "gateway")]
    pid: Option<u32>,
    #[command(flatten)]
    suite: suite::SuiteArgs,
    /// Clients to connect (each needs one file descriptor here and one in the server).
    #[arg(long, default_value_t = 1000)]
    clients: u64,
    /// Sequential /send calls to the group room.
    #[arg(long, default_value_t = 50)]
    sends: u64,
    /// Clients admitted before the baseline memory reading (default: min(100, clients/10)).
    #[arg(long)]
    warm_up: Option<u64>,
    /// WebSocket handshakes + namespace CONNECTs in flight at once.
    #[arg(long, default_value_t = 64)]
    parallel_connects: usize,
    /// Seconds to let the server settle before each memory reading.
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// Keep the idle clients connected this many seconds after the idle memory reading, before
    /// any /send (to attach a profiler to the server).
    #[arg(long, default_value_t = 0)]
    hold_idle_secs: u64,
    /// Scrape the server's `/metrics` every this many milliseconds during the group fan-out
    /// (0: never), to include what scraping costs in the server's CPU figure.
    #[arg(long, default_value_t = 0)]
    scrape_every_ms: u64,
    /// Deadline of each phase (admitting all clients; each /send's deliveries), in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Site name (also the namespace).
    #[arg(long, default_value = "demo")]
    site: String,
    /// The site's apiKey.
    #[arg(long, default_value = "demo")]
    api_key: String,
    /// The group room every client is in.
    #[arg(long, default_value = "staff")]
    group: String,
    /// The site's userRoomPrefix.
    #[arg(long, default_value = "user_")]
    user_room_prefix: String,
    /// Client i connects with token `<token-prefix><i>`.
    #[arg(long, default_value = "bench")]
    token_prefix: String,
    /// First column of the result row (e.g. the binary's name).
    #[arg(long, default_value = "courier")]
    label: String,
}

/// Everything one run measured.
#[derive(Debug)]
struct Results {
    rss_baseline_kib: u64,
    rss_idle_kib: u64,
    rss_after_sends_kib: u64,
    measured_connections: u64,
    admission_elapsed: Duration,
    group_deliveries: u64,
    group_elapsed: Duration,
    group_latencies: Vec<Duration>,
    /// Server CPU seconds used during the group fan-out.
    group_cpu_seconds: f64,
    /// `/metrics` scrapes made during it.
    scrapes: u64,
    user_rooms: u64,
    user_rooms_elapsed: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("courier-bench: cannot start tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(binary) = args.suite.gateway.clone() {
        let timeout = Duration::from_secs(args.timeout_secs);
        let (rows, outcome) = runtime.block_on(suite::run(
            &args.suite,
            binary,
            timeout,
            args.parallel_connects,
        ));
        drop(runtime);
        // What was measured before a failure is printed too.
        println!("{}", suite::table(&args.label, &rows));
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("courier-bench ({}): {error}", args.label);
                ExitCode::FAILURE
            }
        };
    }
    let (Some(port), Some(pid)) = (args.port, args.pid) else {
        eprintln!("courier-bench: --port and --pid are required without --gateway");
        return ExitCode::FAILURE;
    };
    let outcome = runtime.block_on(run(&args, port, pid));
    // Dropping the runtime cancels the client tasks, which closes their sockets.
    drop(runtime);
    match outcome {
        Ok(results) => {
            eprint!("{}", details(&args, &results));
            println!("{}", table_row(&args, &results));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("courier-bench ({}): {error}", args.label);
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args, port: u16, pid: u32) -> Result<Results, String> {
    if args.clients == 0 {
        return Err("--clients must be at least 1".to_owned());
    }
    // Fail before opening any connection when the pid is wrong.
    stats::process_rss_kib(pid)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let settle = Duration::from_secs(args.settle_secs);
    let warm_up = args
        .warm_up
        .unwrap_or((args.clients / 10).min(100))
        .min(args.clients - 1);
    // Message indices: 0..sends to the group, `sends` to the user rooms.
    let mut fleet = Fleet::new(args.sends + 1, args.parallel_connects);
    let spec = ClientSpec {
        port,
        namespace: args.site.clone(),
        token: String::new(),
        eio: 4,
    };
    let tally = Arc::clone(&fleet.tally);
    let deadline = || Instant::now() + timeout;
    fleet
        .connect(&spec, &args.token_prefix, 0..warm_up, deadline())
        .await?;
    tokio::time::sleep(settle).await;
    let rss_baseline_kib = stats::process_rss_kib(pid)?;
    let admission_started = Instant::now();
    fleet
        .connect(&spec, &args.token_prefix, warm_up..args.clients, deadline())
        .await?;
    let admission_elapsed = admission_started.elapsed();
    // Admission finishes with store commands after `_settings`; let them land before
    // reading memory and before the first group send (which resolves the group's members).
    tokio::time::sleep(settle).await;
    let rss_idle_kib = stats::process_rss_kib(pid)?;
    if args.hold_idle_secs > 0 {
        eprintln!(
            "{}: {} idle clients connected, server VmRSS {rss_idle_kib} KiB; holding {} s",
            args.label, args.clients, args.hold_idle_secs
        );
        tokio::time::sleep(Duration::from_secs(args.hold_idle_secs)).await;
    }

    let mut group_latencies = Vec::new();
    let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let scraper = (args.scrape_every_ms > 0).then(|| {
        let (port, scrapes) = (port, Arc::clone(&scrapes));
        let every = Duration::from_millis(args.scrape_every_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if http::get(port, "/metrics").await.is_ok() {
                    scrapes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    });
    let cpu_before = stats::process_cpu_seconds(pid)?;
    let group_started = Instant::now();
    for index in 0..args.sends {
        let rooms = [args.group.clone()];
        group_latencies
            .push(send_and_wait(port, args, &tally, &rooms, index, args.clients, timeout).await?);
    }
    let group_elapsed = group_started.elapsed();
    let group_cpu_seconds = stats::process_cpu_seconds(pid)? - cpu_before;
    if let Some(scraper) = scraper {
        scraper.abort();
    }
    let scrapes = scrapes.load(std::sync::atomic::Ordering::Relaxed);

    let user_rooms = wire::rooms_fitting_one_send(
        &format!("{}{}", args.user_room_prefix, args.token_prefix),
        args.clients,
    );
    let rooms: Vec<String> = (0..user_rooms)
        .map(|index| format!("{}{}{index}", args.user_room_prefix, args.token_prefix))
        .collect();
    let user_rooms_elapsed =
        send_and_wait(port, args, &tally, &rooms, args.sends, user_rooms, timeout).await?;

    tokio::time::sleep(settle).await;
    let rss_after_sends_kib = stats::process_rss_kib(pid)?;
    Ok(Results {
        rss_baseline_kib,
        rss_idle_kib,
        rss_after_sends_kib,
        measured_connections: args.clients - warm_up,
        admission_elapsed,
        group_deliveries: args.clients * args.sends,
        group_elapsed,
        group_latencies,
        group_cpu_seconds,
        scrapes,
        user_rooms,
        user_rooms_elapsed,
    })
}

/// One `/send` of message `index` to `rooms`, then waits until `recipients` clients have it;
/// returns the time from the request until the last delivery.
async fn send_and_wait(
    port: u16,
    args: &Args,
    tally: &Tally,
    rooms: &[String],
    index: u64,
    recipients: u64,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let body = wire::send_body(rooms, BENCH_EVENT, index);
    tokio::time::timeout_at(deadline.into(), post_send(port, args, &body))
        .await
        .map_err(|_| format!("/send #{index}: no answer in time"))??;
    tally
        .wait_for(
            &format!("deliveries of /send #{index}"),
            deadline,
            |tally| tally.deliveries(index) >= recipients,
        )
        .await?;
    Ok(started.elapsed())
}

/// `POST /send` over a fresh connection; `Err` unless the answer is 200.
async fn post_send(port: u16, args: &Args, body: &str) -> Result<(), String> {
    http::KeepAlive::connect(port)
        .await?
        .send(&args.site, &args.api_key, body)
        .await
}

fn ms(duration: Option<Duration>) -> String {
    duration.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1e3),
    )
}

/// One row of the table `scripts/bench` prints (its header is there).
fn table_row(args: &Args, results: &Results) -> String {
    format!(
        "| {} | {} | {:.1} | {:.0} | {} / {} | {} in {} ms ({:.0}/s) |",
        args.label,
        args.clients,
        stats::kib_per_connection(
            results.rss_baseline_kib,
            results.rss_idle_kib,
            results.measured_connections
        ),
        stats::per_second(results.group_deliveries, results.group_elapsed),
        ms(stats::percentile(&results.group_latencies, 50.0)),
        ms(stats::percentile(&results.group_latencies, 99.0)),
        results.user_rooms,
        ms(Some(results.user_rooms_elapsed)),
        stats::per_second(results.user_rooms, results.user_rooms_elapsed),
    )
}

fn details(args: &Args, results: &Results) -> String {
    format!(
        "{label}: {clients} clients\n\
         \x20 admitted {measured} clients in {admission_secs:.2} s ({admission_rate:.0}/s, {parallel} handshakes at a time)\n\
         \x20 idle RSS: {base} KiB after warm-up -> {idle} KiB with all admitted = {per:.2} KiB per connection ({measured} measured)\n\
         \x20 group '{group}': {sends} sends x {clients} clients = {deliveries} deliveries in {secs:.2} s = {rate:.0}/s; send->all delivered p50 {p50} ms, p99 {p99} ms, max {max} ms\n\
         \x20 group fan-out server CPU: {cpu:.3} s = {cpu_us:.2} us per delivery ({scrapes} /metrics scrapes meanwhile)\n\
         \x20 user rooms: 1 send to {user_rooms} rooms delivered in {user_ms} ms\n\
         \x20 RSS after the sends: {after} KiB\n",
        label = args.label,
        clients = args.clients,
        base = results.rss_baseline_kib,
        idle = results.rss_idle_kib,
        per = stats::kib_per_connection(
            results.rss_baseline_kib,
            results.rss_idle_kib,
            results.measured_connections
        ),
        measured = results.measured_connections,
        admission_secs = results.admission_elapsed.as_secs_f64(),
        admission_rate = stats::per_second(results.measured_connections, results.admission_elapsed),
        parallel = args.parallel_connects,
        group = args.group,
        sends = args.sends,
        deliveries = results.group_deliveries,
        secs = results.group_elapsed.as_secs_f64(),
        rate = stats::per_second(results.group_deliveries, results.group_elapsed),
        p50 = ms(stats::percentile(&results.group_latencies, 50.0)),
        p99 = ms(stats::percentile(&results.group_latencies, 99.0)),
        max = ms(results.group_latencies.iter().max().copied()),
        cpu = results.group_cpu_seconds,
        cpu_us = results.group_cpu_seconds * 1e6 / results.group_deliveries.max(1) as f64,
        scrapes = results.scrapes,
        user_rooms = results.user_rooms,
        user_ms = ms(Some(results.user_rooms_elapsed)),
        after = results.rss_after_sends_kib,
    )
}
