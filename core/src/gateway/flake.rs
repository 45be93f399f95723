//! Flake ids: the 64-bit, time-ordered message ids the original made with `flake-idgen` 1.x.
//!
//! Layout, most significant bit first: 42 bits of milliseconds since the configured epoch
//! (the Unix epoch by default), 5 bits of datacenter, 5 bits of worker (or 10 bits of machine
//! id when `flakeid.id` is configured), 12 bits of sequence. Ids are written as unpadded
//! decimal strings (`7530115940332077057`).
//!
//! Unlike `flake-idgen`, which throws when the clock steps back or when more than 4096 ids are
//! asked for in one millisecond, this generator never fails: it keeps using its last
//! millisecond while the clock is behind it, and borrows the next millisecond when a
//! millisecond's sequence is used up. Ids therefore stay unique and strictly increasing.

const SEQUENCE_BITS: u32 = 12;
const MACHINE_BITS: u32 = 10;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
const TIME_MASK: u64 = (1 << (64 - SEQUENCE_BITS - MACHINE_BITS)) - 1;

/// The `flakeid:` section of `config.yml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlakeSettings {
    /// `flakeid.id`: the full 10-bit machine id; when set it replaces datacenter and worker.
    pub machine_id: Option<u16>,
    /// `flakeid.datacenter`, 0–31.
    pub datacenter: u8,
    /// `flakeid.worker`, 0–31.
    pub worker: u8,
    /// `flakeid.epoch`, Unix milliseconds the time field counts from (0 = the Unix epoch).
    pub epoch_ms: u64,
}

impl FlakeSettings {
    /// The 10-bit machine field: `id`, or `datacenter << 5 | worker` (each masked to 5 bits,
    /// as `flake-idgen` does).
    pub fn machine_field(&self) -> u64 {
        match self.machine_id {
            Some(id) => u64::from(id) & 0x3FF,
            None => (u64::from(self.datacenter) & 0x1F) << 5 | (u64::from(self.worker) & 0x1F),
        }
    }
}

/// Makes flake ids from wall-clock readings handed in by the caller.
#[derive(Debug, Clone)]
pub struct FlakeGenerator {
    machine: u64,
    epoch_ms: u64,
    last_ms: u64,
    sequence: u64,
    started: bool,
    /// The first sequence number of a millisecond, and the step between two.
    offset: u64,
    stride: u64,
}

impl FlakeGenerator {
    /// A generator for these settings.
    pub fn new(settings: FlakeSettings) -> Self {
        FlakeGenerator::shared(settings, 0, 1)
    }

    /// Generator `index` of `count` that share one machine field (the engines of one process,
    /// which share the node's `flakeid` settings): each takes the sequence numbers `index`,
    /// `index + count`, … of a millisecond, so their ids never collide.
    pub fn shared(settings: FlakeSettings, index: u8, count: u8) -> Self {
        let stride = u64::from(count.max(1));
        FlakeGenerator {
            machine: settings.machine_field(),
            epoch_ms: settings.epoch_ms,
            last_ms: 0,
            sequence: 0,
            started: false,
            offset: u64::from(index) % stride,
            stride,
        }
    }

    /// The next id at wall clock `unix_ms`. Strictly greater than every id this generator
    /// returned before, whatever `unix_ms` does.
    pub fn next_id(&mut self, unix_ms: u64) -> u64 {
        let now = unix_ms.saturating_sub(self.epoch_ms) & TIME_MASK;
        if !self.started || now > self.last_ms {
            self.started = true;
            self.last_ms = now;
            self.sequence = self.offset;
        } else if self.sequence + self.stride <= SEQUENCE_MASK {
            // Same millisecond, or the clock stepped back: stay on the last millisecond.
            self.sequence += self.stride;
        } else {
            // The millisecond's sequence is used up: borrow the next one rather than fail.
            self.last_ms = (self.last_ms + 1) & TIME_MASK;
            self.sequence = self.offset;
        }
        self.last_ms << (SEQUENCE_BITS + MACHINE_BITS)
            | self.machine << SEQUENCE_BITS
            | self.sequence
    }

    /// The Unix millisecond an id was made at (with this generator's epoch).
    pub fn timestamp_ms(&self, id: u64) -> u64 {
        (id >> (SEQUENCE_BITS + MACHINE_BITS)) + self.epoch_ms
    }
}
