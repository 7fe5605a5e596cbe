//! What `packaging/` ships for running knappval as a service: the systemd unit is one systemd reads without a
//! complaint, and the settings file it points at is one the daemon starts with.

mod common;

use common::{Daemon, Fixture, MenuSpec};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const UNIT: &str = "packaging/knappval.service";
const SETTINGS: &str = "packaging/knappval.yaml";
const INSTALLED_BIN: &str = "/usr/local/bin/knappval";

fn shipped(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[test]
fn the_systemd_unit_is_read_without_a_warning() {
    let unit = std::fs::read_to_string(shipped(UNIT)).expect("the unit");
    assert!(
        unit.contains(&format!(
            "ExecStart={INSTALLED_BIN} run --config /etc/knappval/knappval.yaml"
        )),
        "the unit starts the installed binary with the shipped settings file"
    );
    // systemd checks that the binary exists: point the copy at the one just built.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("knappval.service");
    std::fs::write(
        &copy,
        unit.replace(INSTALLED_BIN, env!("CARGO_BIN_EXE_knappval")),
    )
    .expect("copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian's systemd; tests/run.sh installs it when missing)");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed: {said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warns: {said}"
    );
}

#[test]
fn the_daemon_starts_with_the_shipped_settings_file() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    // The test's own flags (menu, prompts, database, addresses) win over the file's paths under /etc and /var,
    // as flags do; every other key is the file's, and an unknown or misspelt one would stop the start.
    let settings = shipped(SETTINGS);
    let mut daemon = Daemon::start_with(
        fixture,
        &["--config", settings.to_str().expect("utf-8 path")],
    );
    let (status, body) = daemon.get("/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(daemon.stop(Duration::from_secs(15)).success());
}
