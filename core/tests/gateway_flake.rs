//! Flake ids: the original's layout, unique and increasing whatever the clock does.

use courier_core::gateway::flake::{FlakeGenerator, FlakeSettings};

#[test]
fn layout_is_time_datacenter_worker_sequence() {
    let mut generator = FlakeGenerator::new(FlakeSettings {
        machine_id: None,
        datacenter: 3,
        worker: 5,
        epoch_ms: 0,
    });
    let ms = 1_795_000_000_123u64;
    let first = generator.next_id(ms);
    assert_eq!(first, ms << 22 | 3 << 17 | 5 << 12);
    assert_eq!(
        generator.next_id(ms),
        first + 1,
        "same millisecond: next sequence"
    );
    assert_eq!(generator.timestamp_ms(first), ms);
    // A value of today's clock is 19 decimal digits, unpadded.
    assert_eq!(first.to_string().len(), 19);
}

#[test]
fn machine_id_replaces_datacenter_and_worker_and_epoch_shifts_time() {
    let settings = FlakeSettings {
        machine_id: Some(0x3FF),
        datacenter: 1,
        worker: 1,
        epoch_ms: 1_000,
    };
    let mut generator = FlakeGenerator::new(settings);
    assert_eq!(generator.next_id(1_005), 5 << 22 | 0x3FF << 12);
    assert_eq!(FlakeSettings::default().machine_field(), 0);
}

#[test]
fn ids_increase_when_the_clock_steps_back_or_a_millisecond_overflows() {
    let mut generator = FlakeGenerator::new(FlakeSettings::default());
    let mut last = generator.next_id(10_000);
    for _ in 0..5_000 {
        let id = generator.next_id(10_000);
        assert!(id > last);
        last = id;
    }
    let back = generator.next_id(9_000);
    assert!(back > last, "clock stepped back");
    let later = generator.next_id(20_000);
    assert_eq!(later, 20_000 << 22);
}

// The engines of one process share the node's flake settings: their ids never collide, each
// engine's still increase, in the same millisecond and across an overflow.
#[test]
fn engines_sharing_a_machine_field_never_make_the_same_id() {
    let settings = FlakeSettings {
        machine_id: Some(7),
        ..FlakeSettings::default()
    };
    let mut seen = std::collections::BTreeSet::new();
    for index in 0..3u8 {
        let mut generator = FlakeGenerator::shared(settings, index, 3);
        let first = generator.next_id(50_000);
        assert_eq!(first, 50_000 << 22 | 7 << 12 | u64::from(index));
        let mut last = first;
        assert!(seen.insert(first));
        // More than a millisecond's share: the generator borrows the next milliseconds.
        for _ in 0..3_000 {
            let id = generator.next_id(50_000);
            assert!(id > last);
            assert_eq!(
                (id & 0xFFF) % 3,
                u64::from(index),
                "its own sequence numbers"
            );
            assert!(seen.insert(id), "id {id} made twice");
            last = id;
        }
    }
}
