//! Media-engine spike: user-space work per forwarded RTP packet of an SFU built on the sans-IO
//! `rtc` crate (what webrtc 0.21 wraps) and on `str0m` (RTP mode), in one process, no sockets.
//!
//! Each engine wires one publisher and N subscriber connections back-to-back in memory with a
//! client connection of the same engine (ICE, DTLS and SRTP done for real, a fake clock), then
//! times only the SFU side of forwarding: the publisher's encrypted datagram in, the RTP read
//! out, one write per subscriber, and every outgoing datagram drained into a reused buffer.
//! The clients' decryption is not timed; their datagrams are made before the timed region.

mod alloc;
mod rtc_engine;
mod str0m_engine;

use std::time::Duration;

/// One measurement's settings, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub subscribers: usize,
    /// RTP payload bytes per packet (~1,100 for VP8 video, ~100 for Opus audio).
    pub payload: usize,
    pub audio: bool,
    /// Packets forwarded before the timed region (binds streams, warms caches).
    pub warmup: usize,
    /// Packets forwarded in the timed region.
    pub packets: usize,
    /// Simulated time between published packets (timers run in simulated time).
    pub interval: Duration,
    /// str0m only: enable its send-side bandwidth estimation and pacer on subscriber legs.
    pub bwe: bool,
    /// str0m only: poll a subscriber right after the write, without first handing it the
    /// time (`Input::Timeout`); shows what that call costs.
    pub no_tick: bool,
}

/// What a run measured, for the SFU side only.
#[derive(Debug, Default)]
pub struct Measured {
    /// Wall-clock time of the timed region.
    pub nanos: u128,
    /// CPU time of this thread in the timed region.
    pub cpu_nanos: u128,
    pub allocs: u64,
    pub forwarded: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    /// A packet lost on the way to a subscriber was NACKed by its client and resent.
    pub nack_repaired: bool,
    /// A subscriber's PLI reached the server, and the server's PLI reached the publisher.
    pub keyframe_relayed: bool,
}

/// Packets published after the timed region for the NACK check.
pub const CHECK_PACKETS: usize = 40;

fn usage() -> ! {
    eprintln!(
        "usage: engine-spike <rtc|str0m> [--subscribers N] [--audio] [--payload BYTES] \
         [--packets P] [--warmup W] [--interval-us U] [--bwe] [--no-tick]"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let engine = args.next().unwrap_or_else(|| usage());
    let mut run = Run {
        subscribers: 4,
        payload: 0,
        audio: false,
        warmup: 200,
        packets: 2000,
        interval: Duration::from_micros(1000),
        bwe: false,
        no_tick: false,
    };
    let num = |v: Option<String>| v.and_then(|v| v.parse::<usize>().ok()).unwrap_or_else(|| usage());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--subscribers" => run.subscribers = num(args.next()),
            "--payload" => run.payload = num(args.next()),
            "--packets" => run.packets = num(args.next()),
            "--warmup" => run.warmup = num(args.next()),
            "--interval-us" => run.interval = Duration::from_micros(num(args.next()) as u64),
            "--audio" => run.audio = true,
            "--bwe" => run.bwe = true,
            "--no-tick" => run.no_tick = true,
            _ => usage(),
        }
    }
    if run.payload == 0 {
        run.payload = if run.audio { 100 } else { 1100 };
    }
    let m = match engine.as_str() {
        "rtc" => rtc_engine::measure(run),
        "str0m" => str0m_engine::measure(run),
        _ => usage(),
    };
    let per = (run.packets * run.subscribers) as f64;
    let expected = (run.packets * run.subscribers) as u64;
    assert_eq!(m.forwarded, expected, "every packet must reach every subscriber leg");
    assert!(m.datagrams_out >= expected, "every forwarded packet must leave as a datagram");
    println!(
        "engine={engine} kind={} payload={} n={} packets={} cpu_ns_per_fwd={:.0} wall_ns_per_fwd={:.0} \
         allocs_per_fwd={:.2} datagrams_out={} bytes_per_datagram={:.0} nack_repaired={} \
         keyframe_relayed={}",
        if run.audio { "audio" } else { "video" },
        run.payload,
        run.subscribers,
        run.packets,
        m.cpu_nanos as f64 / per,
        m.nanos as f64 / per,
        m.allocs as f64 / per,
        m.datagrams_out,
        m.bytes_out as f64 / m.datagrams_out.max(1) as f64,
        m.nack_repaired,
        m.keyframe_relayed,
    );
}

/// The warm-up packets run here, so a profiler can leave them out.
#[inline(never)]
pub fn warm_phase(body: &mut dyn FnMut()) {
    body()
}

/// The timed packets run here and only here: `callgrind --toggle-collect='*timed_phase*'`
/// counts exactly the timed region.
#[inline(never)]
pub fn timed_phase(body: &mut dyn FnMut()) {
    // Different code from `warm_phase`, so the linker cannot fold the two into one symbol.
    std::hint::black_box(0x7e5u32);
    body()
}

/// CPU time this thread has used (user and system; the timed region makes no system calls).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
