//! Languages through the real binary: the caller chooses a language first and then hears that language's prompts
//! (each language's prompts have their own tones here), silence gives the default, the record holds `language`;
//! `check` names every prompt missing in a language's folder; `simulate` takes the language key among its digits.

mod common;

use common::audio::{
    self, ANNOUNCE_2_HZ, ANNOUNCE_HZ, BUSY_HZ, CALLER_HZ, CLOSED_HZ, FUNCTION_CLOSED_HZ,
    GREETING_HZ, INVALID_HZ, MENU_HZ, MORE_HZ,
};
use common::sdp::PCMU;
use common::{Caller, Daemon, Fixture, MenuSpec, SECOND, event_pt};
use serde_json::{Value, json};
use std::time::Duration;

/// What the caller can hear, by tone: the language choice, and the greeting and menu in each language.
const PROMPT_TONES: [(&str, u32); 5] = [
    ("language-choice", CLOSED_HZ),
    ("sv/welcome", GREETING_HZ),
    ("sv/main-menu", MENU_HZ),
    ("en/welcome", ANNOUNCE_2_HZ),
    ("en/main-menu", ANNOUNCE_HZ),
];

const LANGUAGES: &str = "languages: { prompt: language-choice, options: { \"1\": sv, \"2\": en }, default: sv, timeout: 2s }\n";

/// The standard menu with Swedish and English prompts in their folders, each language with its own tones.
fn fixture() -> Fixture {
    let fixture = Fixture::new();
    let sv = [
        ("welcome", GREETING_HZ),
        ("main-menu", MENU_HZ),
        ("invalid-choice", INVALID_HZ),
        ("more-menu", MORE_HZ),
        ("busy", BUSY_HZ),
    ];
    let en = [
        ("welcome", ANNOUNCE_2_HZ),
        ("main-menu", ANNOUNCE_HZ),
        ("invalid-choice", FUNCTION_CLOSED_HZ),
        ("more-menu", FUNCTION_CLOSED_HZ),
        ("busy", FUNCTION_CLOSED_HZ),
    ];
    for (language, prompts) in [("sv", sv), ("en", en)] {
        let folder = fixture.prompts.join(language);
        std::fs::create_dir_all(&folder).expect("a language folder");
        for (id, tone) in prompts {
            let seconds = if id == "main-menu" { 1.6 } else { 0.6 };
            audio::write_tone_wav(
                &folder.join(format!("{id}.wav")),
                f64::from(tone),
                seconds,
                8000,
                1,
            )
            .expect("write a prompt");
        }
    }
    audio::write_tone_wav(
        &fixture.prompts.join("language-choice.wav"),
        f64::from(CLOSED_HZ),
        1.0,
        8000,
        1,
    )
    .expect("write the language choice");
    let spec = MenuSpec::new("sip:it@127.0.0.1:9", "sip:kt@127.0.0.1:9");
    fixture.write_menu(&format!("{}{LANGUAGES}", spec.yaml()));
    fixture
}

fn heard_prompts(segments: &[audio::Segment]) -> Vec<String> {
    audio::heard_prompts(segments, &PROMPT_TONES)
}

/// A call that presses `key` (if any) once the language choice has played, listens until the menu prompt of
/// `menu_tone` has played whole, and hangs up: what it heard, and its record.
fn call(daemon: &Daemon, key: Option<char>, menu_tone: u32) -> (Vec<String>, Value) {
    let caller = Caller::udp(daemon.sip);
    let (mut call, answer, t0) = caller.call(daemon, &[PCMU], CALLER_HZ);
    caller.rtp.wait_tone(CLOSED_HZ, 45, t0, 15 * SECOND);
    if let Some(key) = key {
        caller
            .rtp
            .send_digit(key, event_pt(&answer), Duration::from_millis(100));
    }
    caller.rtp.wait_tone(menu_tone, 70, t0, 20 * SECOND);
    let heard = caller.rtp.segments_since(t0);
    assert_eq!(call.bye().status(), Some(200));
    let record = daemon.wait_record(&call.call_id, 5 * SECOND);
    (heard_prompts(&heard), record)
}

#[test]
fn the_caller_chooses_a_language_and_hears_its_prompts_and_silence_is_the_default() {
    let daemon = Daemon::start(fixture());
    let (heard, record) = call(&daemon, Some('2'), ANNOUNCE_HZ);
    assert_eq!(heard, ["language-choice", "en/welcome", "en/main-menu"]);
    assert_eq!(record["language"], "en", "{record:#}");
    assert_eq!(record["digits"], "2", "{record:#}");

    let (heard, record) = call(&daemon, None, MENU_HZ);
    assert_eq!(heard, ["language-choice", "sv/welcome", "sv/main-menu"]);
    assert_eq!(record["language"], "sv", "{record:#}");
    assert_eq!(record["digits"], "", "{record:#}");
    let steps = record["steps"].as_array().cloned().unwrap_or_default();
    assert!(
        steps
            .iter()
            .any(|s| s["kind"] == "language" && s["value"] == "sv"),
        "{record:#}"
    );
    let mut daemon = daemon;
    assert!(daemon.stop(15 * SECOND).success());
}

#[test]
fn check_names_each_prompt_missing_in_a_language_where_the_menu_names_it() {
    let fixture = fixture();
    let check = || common::daemon::check(&fixture);
    let ok = check();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    std::fs::remove_file(fixture.prompts.join("en/more-menu.wav")).expect("remove a prompt");
    let failed = check();
    assert!(!failed.status.success());
    let report = String::from_utf8_lossy(&failed.stderr);
    let yaml = std::fs::read_to_string(&fixture.menu).expect("the menu");
    let line = yaml
        .lines()
        .position(|l| l.trim() == "prompt: more-menu")
        .expect("the more menu's prompt")
        + 1;
    assert!(
        report.contains(&format!("menu.yaml:{line}:")),
        "at the line that names it: {report}"
    );
    assert!(
        report.contains("prompt 'more-menu' is missing in language 'en'")
            && report.contains("en/more-menu.wav"),
        "{report}"
    );
    assert!(
        !report.contains("missing in language 'sv'"),
        "only the language that lacks it: {report}"
    );
}

#[test]
fn simulate_takes_the_language_key_among_its_digits() {
    let fixture = fixture();
    let simulate = |digits: &str| -> Value {
        let output = common::daemon::simulate(&fixture, &["--digits", digits, "--format", "json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("one JSON object")
    };
    assert_eq!(
        simulate("2,3"),
        json!({"outcome": "transferred", "function": "it",
               "heard": ["language-choice", "welcome", "main-menu"], "path": ["root"]})
    );
    // No key for the language: the default after its timeout, then 3.
    assert_eq!(simulate(",3")["function"], "it");
}
