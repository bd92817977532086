//! Start-up errors are clear: they name what is wrong, through the real binary.

use std::process::Command;

fn hearth(envs: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.args(args).env_remove("HEARTH_CONFIG").current_dir(env!("CARGO_MANIFEST_DIR"));
    let store = std::env::temp_dir().join(format!("hearth-startup-{}.db", std::process::id()));
    cmd.env("HEARTH_STORE__PATH", &store);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hearth");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn bad_config_value_names_key_and_value() {
    let (ok, err) = hearth(&[("HEARTH_LIMITS__MAX_ROOM_SIZE", "lots")], &["check-config"]);
    assert!(!ok);
    assert!(err.contains("limits.max_room_size") && err.contains("lots"), "{err}");
    let (ok, err) = hearth(&[("HEARTH_SERVER__LISTEN", "not-an-address")], &[]);
    assert!(!ok);
    assert!(err.contains("server.listen") && err.contains("not-an-address"), "{err}");
    assert!(!err.contains("backtrace"), "one readable line, not a dump: {err}");
}

#[test]
fn missing_config_file_is_named() {
    let (ok, err) = hearth(&[], &["--config", "/nonexistent/hearth.toml", "check-config"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/hearth.toml"), "{err}");
}

#[test]
fn port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, err) = hearth(&[("HEARTH_SERVER__LISTEN", &addr)], &[]);
    assert!(!ok);
    assert!(err.contains(&addr) && err.contains("cannot listen"), "{err}");
}

#[test]
fn unreadable_tls_files_are_reported() {
    let (ok, err) = hearth(&[("HEARTH_SERVER__TLS_CERT", "/nonexistent/c.pem"), ("HEARTH_SERVER__TLS_KEY", "/nonexistent/k.pem")], &[]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/c.pem") && err.contains("TLS"), "{err}");
}

#[test]
fn production_refuses_the_development_secret() {
    let (ok, err) = hearth(&[("HEARTH_SERVER__PRODUCTION", "true")], &["check-config"]);
    assert!(!ok);
    assert!(err.contains("auth.token_secret"), "{err}");
}
