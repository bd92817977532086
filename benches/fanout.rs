//! Fanning one room event out to 200 sockets, as the room actor's `broadcast` does: one
//! bounded mpsc outbox per member, `try_send` of a clone of the message to each. `+encode` adds
//! what each connection task then does with its copy (serialise it to JSON), which is the
//! larger share of the cost of one event.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hearth::room::actor::OUTBOX_CAPACITY;
use hearth::room::ParticipantId;
use hearth::signal::protocol::{encode_server, ParticipantInfo, ServerMessage};
use tokio::sync::mpsc;

const SOCKETS: usize = 200;

fn event() -> ServerMessage {
    ServerMessage::ParticipantUpdated {
        // Built from the wire form so that fields added later with defaults do not break it.
        participant: serde_json::from_value::<ParticipantInfo>(serde_json::json!({
            "id": ParticipantId::random(),
            "name": "Participant 42",
            "role": "participant",
            "audioMuted": true,
            "videoMuted": false,
            "audioHardMuted": false,
            "videoHardMuted": false,
            "handRaised": false,
        }))
        .expect("roster entry matches the protocol"),
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_200");
    group.throughput(Throughput::Elements(SOCKETS as u64));
    let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..SOCKETS).map(|_| mpsc::channel::<ServerMessage>(OUTBOX_CAPACITY)).unzip();
    let msg = event();

    group.bench_function("try_send", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                for tx in &senders {
                    let _ = black_box(tx.try_send(msg.clone()));
                }
                total += start.elapsed();
                // Emptying the outboxes is the sockets' work, not the room's: not timed.
                for rx in receivers.iter_mut() {
                    while rx.try_recv().is_ok() {}
                }
            }
            total
        })
    });

    group.bench_function("try_send+encode", |b| {
        b.iter(|| {
            for tx in &senders {
                let _ = tx.try_send(msg.clone());
            }
            for rx in receivers.iter_mut() {
                while let Ok(m) = rx.try_recv() {
                    black_box(encode_server(&m));
                }
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = fanout
}
criterion_main!(benches);
