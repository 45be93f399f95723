//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same entry points
//! the cargo-fuzz targets call, so every finding ever committed stays fixed.

use std::fs;
use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut count = 0;
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let data = fs::read(&path).expect("corpus file");
        run(&data);
        count += 1;
    }
    assert!(count > 0, "empty corpus for {target}");
}

#[test]
fn eio_packet_corpus() {
    replay("eio_packet", courier_core::fuzzing::eio_packet);
}

#[test]
fn eio_payload_corpus() {
    replay("eio_payload", courier_core::fuzzing::eio_payload);
}

#[test]
fn sio_packet_corpus() {
    replay("sio_packet", courier_core::fuzzing::sio_packet);
}

#[test]
fn engine_corpus() {
    replay("engine", courier_core::fuzzing::engine);
}

#[test]
fn send_corpus() {
    replay("send", courier_core::fuzzing::send);
}

#[test]
fn batch_corpus() {
    replay("batch", courier_core::fuzzing::batch);
}
