//! CPU time and memory of a process, and the machine's busy time, from Linux `/proc`.
//!
//! Read directly rather than through a crate: three small text files, and the load generator
//! must know exactly what it measures (the whole process, all threads, user + system).

use std::path::PathBuf;

/// Clock ticks per second in `/proc/<pid>/stat`. USER_HZ is fixed at 100 in the Linux ABI on
/// every architecture Hearth runs on (the kernel converts from its internal HZ), so it is not
/// read from sysconf.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessSample {
    /// User + system CPU seconds since the process started, all threads.
    pub cpu_seconds: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub peak_rss_kib: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("unexpected format in {0}")]
    Format(PathBuf),
}

/// Samples process `pid` (`None`: this process).
pub fn sample(pid: Option<u32>) -> Result<ProcessSample, ProcError> {
    let dir = match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}")),
        None => PathBuf::from("/proc/self"),
    };
    let stat_path = dir.join("stat");
    let stat = read(&stat_path)?;
    let (utime, stime) = parse_stat_times(&stat).ok_or_else(|| ProcError::Format(stat_path.clone()))?;
    let status_path = dir.join("status");
    let status = read(&status_path)?;
    let rss_kib = status_kib(&status, "VmRSS:").ok_or_else(|| ProcError::Format(status_path.clone()))?;
    let peak_rss_kib = status_kib(&status, "VmHWM:").unwrap_or(rss_kib);
    Ok(ProcessSample { cpu_seconds: (utime + stime) as f64 / USER_HZ, rss_kib, peak_rss_kib })
}

/// Busy and total jiffies of the whole machine (first line of `/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MachineSample {
    pub busy: u64,
    pub total: u64,
}

impl MachineSample {
    /// Fraction of all cores busy between `self` and a later sample.
    pub fn busy_fraction_until(&self, later: &MachineSample) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        later.busy.saturating_sub(self.busy) as f64 / total as f64
    }
}

pub fn machine() -> Result<MachineSample, ProcError> {
    let path = PathBuf::from("/proc/stat");
    let text = read(&path)?;
    parse_machine(&text).ok_or(ProcError::Format(path))
}

/// The kernel's UDP counters (`/proc/net/snmp`, all sockets of this network namespace): over
/// loopback, `rcvbuf_errors` are datagrams dropped because a receiver's socket buffer was full,
/// which is how a CPU-starved receiver loses packets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    pub out_datagrams: u64,
    pub rcvbuf_errors: u64,
    pub sndbuf_errors: u64,
}

pub fn udp() -> Result<UdpCounters, ProcError> {
    let path = PathBuf::from("/proc/net/snmp");
    let text = read(&path)?;
    parse_udp(&text).ok_or(ProcError::Format(path))
}

fn parse_udp(text: &str) -> Option<UdpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| names.iter().position(|n| *n == name).and_then(|i| values.get(i)?.parse().ok());
    Some(UdpCounters {
        in_datagrams: get("InDatagrams")?,
        out_datagrams: get("OutDatagrams")?,
        rcvbuf_errors: get("RcvbufErrors").unwrap_or(0),
        sndbuf_errors: get("SndbufErrors").unwrap_or(0),
    })
}

/// Datagrams the kernel dropped at the UDP sockets process `pid` (`None`: this process) holds
/// open, because their receive buffers were full: tells whose reading fell behind.
pub fn udp_socket_drops(pid: Option<u32>) -> Result<u64, ProcError> {
    let dir = match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}")),
        None => PathBuf::from("/proc/self"),
    };
    let fd_dir = dir.join("fd");
    let entries = std::fs::read_dir(&fd_dir).map_err(|source| ProcError::Read { path: fd_dir.clone(), source })?;
    let inodes: std::collections::HashSet<u64> = entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect();
    let mut drops = 0;
    for table in ["net/udp", "net/udp6"] {
        let path = dir.join(table);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        drops += socket_table_drops(&text, &inodes);
    }
    Ok(drops)
}

/// Sums the `drops` column of `/proc/net/udp` rows whose inode is in `inodes`.
fn socket_table_drops(text: &str, inodes: &std::collections::HashSet<u64>) -> u64 {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            let inode: u64 = cols.get(9)?.parse().ok()?;
            let drops: u64 = cols.get(12)?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

fn read(path: &PathBuf) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read { path: path.clone(), source })
}

/// utime and stime (fields 14 and 15). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat_times(stat: &str) -> Option<(u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th and stime the 13th.
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn parse_machine(text: &str) -> Option<MachineSample> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).unwrap_or(&0);
    Some(MachineSample { busy: total - idle, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_survive_odd_command_names() {
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1000 1 2 3";
        assert_eq!(parse_stat_times(stat), Some((250, 50)));
    }

    #[test]
    fn status_and_machine_parse() {
        let status = "Name:\thearth\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        let m = parse_machine("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n").expect("parses");
        assert_eq!(m, MachineSample { busy: 150, total: 1000 });
    }

    #[test]
    fn udp_counters_parse() {
        let text = "Ip: a b\nIp: 1 2\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 100 1 7 90 6 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        let u = parse_udp(text).expect("parses");
        assert_eq!(u, UdpCounters { in_datagrams: 100, out_datagrams: 90, rcvbuf_errors: 6, sndbuf_errors: 0 });
    }

    #[test]
    fn socket_drops_are_summed_by_inode() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1111 2 0000000000000000 5\n\
            2: 0100007F:A1B3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2222 2 0000000000000000 7\n";
        let mine = [1111u64].into_iter().collect();
        assert_eq!(socket_table_drops(text, &mine), 5);
        assert_eq!(udp_socket_drops(None).expect("own sockets"), 0);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(None).expect("own /proc");
        assert!(s.rss_kib > 0);
        assert!(machine().expect("/proc/stat").total > 0);
    }
}
