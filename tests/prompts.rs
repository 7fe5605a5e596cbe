//! `knappval prompts synth` through the binary: drafts rendered with espeak-ng into 8 kHz mono 16-bit WAVs that
//! the daemon plays, listed as drafts by `check` until a recording replaces them, recordings kept unless
//! `--force`, and a plain message when espeak-ng is missing.

mod common;

use common::audio::{self, CALLER_HZ, MENU_HZ};
use common::daemon::{bin, os, path_arg, run_cli};
use common::sdp::PCMU;
use common::{Caller, Daemon, Fixture, MenuSpec, SECOND};
use std::path::Path;
use std::process::Command;

fn synth(fixture: &Fixture, texts: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        os("prompts"),
        os("synth"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--text"),
        path_arg(texts),
        os("--prompts"),
        path_arg(&fixture.prompts),
    ];
    args.extend(extra.iter().map(|a| os(a)));
    run_cli(&args)
}

fn check(fixture: &Fixture) -> String {
    let out = run_cli(&[
        os("check"),
        os("--menu"),
        path_arg(&fixture.menu),
        os("--prompts"),
        path_arg(&fixture.prompts),
    ]);
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn drafts_line(check_output: &str) -> String {
    check_output
        .lines()
        .find(|l| l.contains("still drafts"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn synth_renders_missing_prompts_as_drafts_that_check_lists_and_the_daemon_plays() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    // The menu prompt is not recorded yet; the greeting is (a test tone).
    let menu_wav = fixture.prompts.join("main-menu.wav");
    let welcome_wav = fixture.prompts.join("welcome.wav");
    std::fs::remove_file(&menu_wav).expect("remove main-menu.wav");
    let recorded_welcome = std::fs::read(&welcome_wav).expect("read welcome.wav");
    let texts = fixture.path("text.yaml");
    std::fs::write(
        &texts,
        "main-menu: \"Tryck 1 för Kundtjänst, 3 för I T Kundservice.\"\nwelcome: \"Välkommen.\"\n",
    )
    .expect("write text.yaml");

    let out = synth(&fixture, &texts, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "synth failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("main-menu.wav: draft written"), "{stdout}");
    assert!(
        stdout.contains("welcome.wav: kept: a recording"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(&welcome_wav).expect("read welcome.wav"),
        recorded_welcome,
        "a recording is not overwritten without --force"
    );
    let reader = hound::WavReader::open(&menu_wav).expect("the draft is a WAV");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16),
        "8 kHz mono 16-bit"
    );
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples");
    assert!(
        samples.len() > 8000,
        "more than a second of speech: {}",
        samples.len()
    );
    assert!(audio::rms(&samples) > 1000.0, "the draft is not silent");

    let listed = drafts_line(&check(&fixture));
    assert!(
        listed.contains("1 prompt is still drafts") && listed.contains("main-menu"),
        "check lists the draft: {listed}"
    );
    assert!(!listed.contains("welcome"), "{listed}");

    // The daemon loads the draft and the caller hears speech where the menu prompt plays.
    let daemon = Daemon::start(fixture);
    let caller = Caller::udp(daemon.sip);
    let (mut call, _answer, t0) = caller.call(&daemon, &[PCMU], CALLER_HZ);
    caller
        .rtp
        .wait_tone(audio::GREETING_HZ, 10, t0, 15 * SECOND);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let heard = caller.rtp.samples_since(t0);
    let after_greeting = &heard[heard.len().saturating_sub(8000)..];
    assert!(
        audio::rms(after_greeting) > 500.0,
        "the drafted menu prompt is heard after the greeting"
    );
    assert!(
        audio::tone_share(after_greeting, f64::from(MENU_HZ)) < 0.5,
        "speech, not the old test tone"
    );
    assert_eq!(call.bye().status(), Some(200));
    let fixture = {
        let mut daemon = daemon;
        let status = daemon.stop(15 * SECOND);
        assert!(status.success(), "knappval exited with {status}");
        std::mem::take(&mut daemon.fixture)
    };

    // --force replaces the recording with a draft too; a recording copied over a draft ends its draft status.
    let out = synth(&fixture, &texts, &["--force"]);
    assert!(out.status.success());
    assert_ne!(std::fs::read(&welcome_wav).expect("read"), recorded_welcome);
    let listed = drafts_line(&check(&fixture));
    assert!(listed.contains("2 prompts are still drafts"), "{listed}");
    std::fs::write(&welcome_wav, &recorded_welcome).expect("put the recording back");
    let listed = drafts_line(&check(&fixture));
    assert!(
        listed.contains("1 prompt is still drafts") && !listed.contains("welcome"),
        "{listed}"
    );
}

#[test]
fn synth_without_espeak_ng_says_how_to_install_it() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    let texts = fixture.path("text.yaml");
    std::fs::write(&texts, "welcome: \"Välkommen.\"\n").expect("write text.yaml");
    let empty_path = fixture.path("no-tools");
    std::fs::create_dir_all(&empty_path).expect("mkdir");
    let out = Command::new(bin())
        .args(["prompts", "synth", "--menu"])
        .arg(&fixture.menu)
        .arg("--text")
        .arg(&texts)
        .arg("--prompts")
        .arg(&fixture.prompts)
        .env("PATH", &empty_path)
        .output()
        .expect("run knappval");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("espeak-ng is not installed")
            && stderr.contains("apt-get install espeak-ng"),
        "{stderr}"
    );
}

#[test]
fn a_menu_prompt_with_neither_text_nor_recording_fails_synth_and_names_it() {
    let fixture = Fixture::new();
    fixture.write_menu(&MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9").yaml());
    std::fs::remove_file(fixture.prompts.join("busy.wav")).expect("remove busy.wav");
    let texts = fixture.path("text.yaml");
    std::fs::write(&texts, "welcome: \"Välkommen.\"\nunused: \"Hej.\"\n").expect("write");
    let out = synth(&fixture, &texts, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("busy: no recording and no text"),
        "{stdout}"
    );
    assert!(stdout.contains("unused: not rendered"), "{stdout}");
}
