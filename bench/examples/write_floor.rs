//! What one small `write(2)` on a loopback TCP socket costs the writing thread on this machine:
//! the floor under the gateway's CPU per broadcast delivery (BENCHMARKS.md, "Broadcast and the
//! write path, round 2").
//!
//! On loopback the receiver's TCP input runs in the sender's context (softirq), and a kernel
//! with tick-based CPU accounting charges it to the writing thread; so one delivery written with
//! its own `write(2)` costs the gateway at least this much, whatever happens in user space.
//!
//! ```sh
//! cargo run --release --example write_floor -p courier-bench -- [CONNS] [WRITES] [BYTES] [FRAMES]
//! ```
//!
//! `CONNS` connections (default 1000), `WRITES` rounds (default 200) each writing to every
//! connection once, `FRAMES` frames of `BYTES` bytes (default 1 × 30: a broadcast event's
//! WebSocket frame) per `write(2)`. A reader thread drains every connection. Prints the writing
//! thread's CPU (`utime + stime` of `/proc/thread-self/stat`) per write and per frame.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("arguments are numbers"))
        .collect();
    let conns = args.first().copied().unwrap_or(1000);
    let rounds = args.get(1).copied().unwrap_or(200);
    let bytes = args.get(2).copied().unwrap_or(30);
    let frames = args.get(3).copied().unwrap_or(1).max(1);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut writers = Vec::with_capacity(conns);
    let mut readers = Vec::with_capacity(conns);
    for _ in 0..conns {
        let writer = TcpStream::connect(addr).expect("connect");
        writer.set_nodelay(true).expect("nodelay");
        let (reader, _) = listener.accept().expect("accept");
        reader.set_nonblocking(true).expect("nonblocking");
        writers.push(writer);
        readers.push(reader);
    }

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !done.load(Ordering::Acquire) {
                let mut idle = true;
                for socket in &mut readers {
                    match socket.read(&mut buf) {
                        Ok(n) if n > 0 => idle = false,
                        Ok(_) => {}
                        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                        Err(error) => panic!("read: {error}"),
                    }
                }
                if idle {
                    std::thread::yield_now();
                }
            }
        })
    };

    let payload = vec![b'x'; bytes * frames];
    let started = Instant::now();
    let cpu_before = thread_cpu_ticks();
    for _ in 0..rounds {
        for socket in &mut writers {
            socket.write_all(&payload).expect("write");
        }
    }
    let cpu = thread_cpu_ticks() - cpu_before;
    let wall = started.elapsed();
    done.store(true, Ordering::Release);
    reader.join().expect("reader");

    let ticks_per_second = 100.0; // USER_HZ on Linux
    let writes = (conns * rounds) as f64;
    let cpu_us = cpu as f64 / ticks_per_second * 1e6;
    let _ = writeln!(
        std::io::stdout(),
        "{conns} conns × {rounds} rounds, {frames} × {bytes} B per write(2): \
         writer CPU {:.2} s (wall {:.2} s): {:.2} µs per write, {:.2} µs per frame",
        cpu_us / 1e6,
        wall.as_secs_f64(),
        cpu_us / writes,
        cpu_us / writes / frames as f64,
    );
}

/// `utime + stime` of the calling thread, in clock ticks.
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}
