//! Forwarding one RTP packet to K subscribers, as `src/sfu`: the publisher's reader puts the
//! packet on the track's broadcast channel; each subscription takes its clone and rewrites the
//! header for its own leg (`rewrite_for_subscriber`). Two views:
//! - `fanout_rewrite`: the CPU of the fan-out itself (send, K clones, K rewrites), no tasks;
//! - `fanout_tasks`: K subscription tasks on a tokio runtime, so task wake-ups are counted too.
//!
//! Neither includes what the webrtc crate does after `write_rtp` (SRTP, interceptors, UDP):
//! the load generator and the profile in docs/performance.md measure that.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hearth::sfu::track::{rewrite_for_subscriber, strip_for_fanout};
use rtc::rtp;
use tokio::sync::broadcast;

/// Same capacity as the SFU's per-track channel.
const CAPACITY: usize = 512;

/// A 1,100-byte video packet as it arrives from a browser: two header extensions
/// (transport-wide sequence number, abs-send-time).
fn packet() -> rtp::Packet {
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            extension: true,
            marker: false,
            payload_type: 96,
            sequence_number: 4242,
            timestamp: 90_000,
            ssrc: 0x1234_5678,
            extension_profile: rtp::header::EXTENSION_PROFILE_ONE_BYTE,
            extensions: vec![
                rtp::header::Extension { id: 3, payload: Bytes::from_static(&[0x12, 0x34]) },
                rtp::header::Extension { id: 2, payload: Bytes::from_static(&[0x01, 0x02, 0x03]) },
            ],
            ..Default::default()
        },
        payload: Bytes::from(vec![0x5a; 1100]),
    }
}

/// Before/after in one run: stripping extensions per subscriber (each clone copies the
/// publisher's extension list) versus once before fan-out (what `src/sfu` does now).
fn strip_where(c: &mut Criterion) {
    let mut group = c.benchmark_group("strip_where");
    for k in [10usize, 25] {
        let (tx, _) = broadcast::channel::<rtp::Packet>(CAPACITY);
        let mut receivers: Vec<_> = (0..k).map(|_| tx.subscribe()).collect();
        let template = packet();
        group.throughput(Throughput::Elements(k as u64));
        group.bench_with_input(BenchmarkId::new("per_subscriber", k), &k, |b, _| {
            b.iter(|| {
                let _ = tx.send(template.clone());
                for (i, rx) in receivers.iter_mut().enumerate() {
                    if let Ok(mut p) = rx.try_recv() {
                        strip_for_fanout(&mut p);
                        rewrite_for_subscriber(&mut p, 0xabc0 + i as u32, 100);
                        black_box(p);
                    }
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("once_before_fanout", k), &k, |b, _| {
            b.iter(|| {
                let mut p = template.clone();
                strip_for_fanout(&mut p);
                let _ = tx.send(p);
                for (i, rx) in receivers.iter_mut().enumerate() {
                    if let Ok(mut p) = rx.try_recv() {
                        rewrite_for_subscriber(&mut p, 0xabc0 + i as u32, 100);
                        black_box(p);
                    }
                }
            })
        });
    }
    group.finish();
}

fn fanout_rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_rewrite");
    for k in [1usize, 10, 25] {
        let (tx, _) = broadcast::channel::<rtp::Packet>(CAPACITY);
        let mut receivers: Vec<_> = (0..k).map(|_| tx.subscribe()).collect();
        let mut template = packet();
        strip_for_fanout(&mut template); // as the track's pump does, once per packet
        group.throughput(Throughput::Elements(k as u64));
        group.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, _| {
            b.iter(|| {
                let _ = tx.send(template.clone());
                for (i, rx) in receivers.iter_mut().enumerate() {
                    if let Ok(mut p) = rx.try_recv() {
                        rewrite_for_subscriber(&mut p, 0xabc0 + i as u32, 100);
                        black_box(p);
                    }
                }
            })
        });
    }
    group.finish();
}

fn fanout_tasks(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_tasks");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    for k in [1usize, 10, 25] {
        group.throughput(Throughput::Elements(k as u64));
        group.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, &k| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let (tx, _) = broadcast::channel::<rtp::Packet>(CAPACITY);
                    let done = Arc::new(AtomicU64::new(0));
                    let tasks: Vec<_> = (0..k)
                        .map(|i| {
                            let mut rx = tx.subscribe();
                            let done = done.clone();
                            tokio::spawn(async move {
                                while let Ok(mut p) = rx.recv().await {
                                    rewrite_for_subscriber(&mut p, 0xabc0 + i as u32, 100);
                                    black_box(p);
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                            })
                        })
                        .collect();
                    let mut template = packet();
                    strip_for_fanout(&mut template);
                    let want = |n: u64| n * k as u64;
                    let start = Instant::now();
                    for n in 1..=iters {
                        let _ = tx.send(template.clone());
                        // Let subscribers catch up well before the channel would lag them.
                        if n % 128 == 0 {
                            while done.load(Ordering::Relaxed) < want(n) {
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                    while done.load(Ordering::Relaxed) < want(iters) {
                        tokio::task::yield_now().await;
                    }
                    let elapsed = start.elapsed();
                    drop(tx);
                    for t in tasks {
                        let _ = t.await;
                    }
                    elapsed
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = strip_where, fanout_rewrite, fanout_tasks
}
criterion_main!(benches);
