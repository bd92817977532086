//! Network namespaces for the browser tests about bad networks (`browser_poor_network.rs`,
//! `browser_restricted_network.rs`): a namespace of the test's own joined to this one by a veth
//! pair, its traffic shaped with `tc` (token bucket; this kernel has `tbf`, not `netem`) or
//! filtered with `iptables`, and the processes a test starts inside or beside it (the `hearth`
//! binary, chromedriver, coturn), killed on drop.
//!
//! Only namespaces and links this module creates are touched; everything is removed on drop,
//! and a namespace a killed earlier run left behind (same name: names come from the pid) is
//! removed first. Needs root and Debian's iproute2 and iptables (`scripts/install-test-deps.sh`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Runs a command to completion; its stderr is the error.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A network namespace with a veth pair to it (`<outer_dev>` here, `<inner_dev>` inside), the
/// outer end `10.<octet>.<n>.1/24`, the inner `10.<octet>.<n>.2/24` with its default route
/// through the outer end. Removed on drop.
pub struct Netns {
    pub name: String,
    pub inner_dev: String,
    pub outer_dev: String,
    /// The namespace's gateway: what listens outside for the namespace to reach.
    pub outer_ip: String,
    pub inner_ip: String,
}

impl Netns {
    /// `tag` names the namespace (`hearth-<tag>-<n>`) and its links; `octet` keeps each test's
    /// subnet apart. `n` comes from the pid, so runs of different test binaries do not collide.
    pub fn create(tag: &str, octet: u8) -> Result<Self, String> {
        let n = std::process::id() % 250 + 1;
        let ns = Self {
            name: format!("hearth-{tag}-{n}"),
            inner_dev: format!("h{tag}{n}i"),
            outer_dev: format!("h{tag}{n}o"),
            outer_ip: format!("10.{octet}.{n}.1"),
            inner_ip: format!("10.{octet}.{n}.2"),
        };
        let _ = run("ip", &["netns", "del", &ns.name]);
        let _ = run("ip", &["link", "del", &ns.outer_dev]);
        run("ip", &["netns", "add", &ns.name])?;
        run("ip", &["link", "add", &ns.outer_dev, "type", "veth", "peer", "name", &ns.inner_dev])?;
        run("ip", &["link", "set", &ns.inner_dev, "netns", &ns.name])?;
        run("ip", &["addr", "add", &format!("{}/24", ns.outer_ip), "dev", &ns.outer_dev])?;
        run("ip", &["link", "set", &ns.outer_dev, "up"])?;
        ns.exec(&["ip", "addr", "add", &format!("{}/24", ns.inner_ip), "dev", &ns.inner_dev])?;
        ns.exec(&["ip", "link", "set", &ns.inner_dev, "up"])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        // Without any route out, the media stack's socket set-up fails (ENODEV).
        ns.exec(&["ip", "route", "add", "default", "via", &ns.outer_ip])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Limits what leaves the namespace to `kbit` per second.
    pub fn limit(&self, kbit: u32) -> Result<(), String> {
        let rate = format!("{kbit}kbit");
        self.exec(&["tc", "qdisc", "replace", "dev", &self.inner_dev, "root", "tbf", "rate", &rate, "burst", "6kb", "latency", "80ms"])
    }

    pub fn unlimit(&self) -> Result<(), String> {
        self.exec(&["tc", "qdisc", "del", "dev", &self.inner_dev, "root"])
    }

    /// Limits what enters the namespace to `kbit` per second.
    pub fn limit_uplink(&self, kbit: u32) -> Result<(), String> {
        let rate = format!("{kbit}kbit");
        run("tc", &["qdisc", "replace", "dev", &self.outer_dev, "root", "tbf", "rate", &rate, "burst", "20kb", "latency", "50ms"])
    }

    pub fn unlimit_uplink(&self) -> Result<(), String> {
        run("tc", &["qdisc", "del", "dev", &self.outer_dev, "root"])
    }

    /// Replaces the namespace's outbound rules: always loopback and chromedriver's answers to
    /// the test (from `chromedriver_port`), then `allow` (iptables rule tails, see [`rule`]),
    /// then everything else dropped, or accepted when `default_accept`.
    pub fn firewall(&self, chromedriver_port: u16, allow: &[Vec<String>], default_accept: bool) -> Result<(), String> {
        self.exec(&["iptables", "-F", "OUTPUT"])?;
        self.exec(&["iptables", "-P", "OUTPUT", if default_accept { "ACCEPT" } else { "DROP" }])?;
        self.exec(&["iptables", "-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"])?;
        let port = chromedriver_port.to_string();
        self.exec(&["iptables", "-A", "OUTPUT", "-p", "tcp", "--sport", &port, "-j", "ACCEPT"])?;
        for rule in allow {
            let mut args = vec!["iptables", "-A", "OUTPUT"];
            args.extend(rule.iter().map(String::as_str));
            self.exec(&args)?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
        let _ = run("ip", &["link", "del", &self.outer_dev]);
    }
}

/// An iptables rule tail (`-p tcp --dport 443`); accepting unless it says otherwise.
pub fn rule(text: &str) -> Vec<String> {
    let mut r: Vec<String> = text.split_whitespace().map(String::from).collect();
    if !r.iter().any(|w| w == "-j") {
        r.extend(["-j".to_string(), "ACCEPT".to_string()]);
    }
    r
}

/// A process of the test's, killed on drop; with `group`, its whole process group (a
/// chromedriver and the browsers it started).
pub struct Proc {
    child: Child,
    group: bool,
}

impl Proc {
    pub fn new(child: Child) -> Self {
        Self { child, group: false }
    }

    /// Starts `command` as the leader of a process group of its own, killed as a whole.
    pub fn spawn_group(mut command: Command) -> std::io::Result<Self> {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        Ok(Self { child: command.spawn()?, group: true })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the `hearth` binary from `command` (arguments and environment set by the test), its
/// log to `log`, and reads the address it prints first (`... http://<ip>:<port>`).
pub fn start_hearth(mut command: Command, log: &Path) -> Result<(Proc, String), String> {
    let log = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut child = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot start hearth: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let proc = Proc::new(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    let base = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
    if !base.starts_with("http://") {
        return Err(format!("hearth did not start: {line:?}"));
    }
    Ok((proc, base))
}
