//! SIGTERM and SIGINT complete `Runtime::shutdown_signal` on both runtimes (one test, so the
//! signals this process sends itself are never raced by another test of this binary).

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use courier_io::Runtime;

fn signal_reaches<R: Runtime>(runtime: R, signal: &str) {
    let (done_tx, done_rx) = mpsc::channel();
    // The handlers are installed here, before any signal is sent (an uncaught SIGTERM would end
    // this process).
    let signalled = runtime.shutdown_signal();
    let waiter = std::thread::spawn(move || {
        runtime.block_on(signalled);
        let _ = done_tx.send(());
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(done_rx.try_recv().is_err(), "completed before any signal");
    let status = Command::new("kill")
        .args([format!("-{signal}"), std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    done_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("SIG{signal} did not complete the shutdown signal"));
    waiter.join().expect("waiter");
}

#[test]
fn sigterm_and_sigint_request_shutdown_on_both_runtimes() {
    let tokio = courier_tokio::TokioRuntime::new().expect("tokio runtime");
    signal_reaches(tokio.clone(), "TERM");
    signal_reaches(tokio, "INT");
    signal_reaches(courier_smol::SmolRuntime::new(), "TERM");
    signal_reaches(courier_smol::SmolRuntime::new(), "INT");
}
