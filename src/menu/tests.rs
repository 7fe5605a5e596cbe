//! Loading the menu end to end: the shipped file, and each kind of admin mistake with its exact position.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::{Choice, FailureAction, QueueAgent, ROOT_MENU, Strategy, TransferMode};
use super::*;

fn shipped(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The inline menus below use the shipped prompt ids, so the shipped prompts directory serves them too.
fn prompts_dir() -> PathBuf {
    shipped("prompts")
}

fn any_file(_: &Path) -> Result<(), String> {
    Ok(())
}

/// A real check of what the media path expects, so the shipped prompts are proven playable, not just present.
fn telephone_wav(path: &Path) -> Result<(), String> {
    let reader = hound::WavReader::open(path).map_err(|e| e.to_string())?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.bits_per_sample != 16
        || ![8000, 16000].contains(&spec.sample_rate)
    {
        return Err(format!("{spec:?}"));
    }
    if reader.duration() == 0 {
        return Err("no samples".to_owned());
    }
    Ok(())
}

fn load_inline(source: &str) -> Result<model::Menu, MenuErrors> {
    load_str(source, "t.yaml", &prompts_dir(), &any_file)
}

fn errors(source: &str) -> Vec<MenuError> {
    match load_inline(source) {
        Ok(menu) => panic!("accepted: {menu:?}"),
        Err(errors) => errors.0,
    }
}

/// The only error, as (line, column, message).
fn single(source: &str) -> (usize, usize, String) {
    let errors = errors(source);
    assert_eq!(errors.len(), 1, "{}", MenuErrors(errors.clone()));
    let e = &errors[0];
    (e.line, e.column, e.message.clone())
}

fn help_of(source: &str) -> String {
    let errors = errors(source);
    assert_eq!(errors.len(), 1, "{}", MenuErrors(errors.clone()));
    errors[0].help.clone()
}

const MINIMAL: &str = "\
name: Test
functions:
  it:
    name: IT Kundservice
    target: sip:it@127.0.0.1:5073
  kundtjanst:
    name: Kundtjänst
    target: sip:kundtjanst@127.0.0.1:5071
menu:
  prompt: main-menu
  options:
    \"1\": { route: it }
";

#[test]
fn the_shipped_menu_loads_with_its_playable_prompts() {
    let menu = load(
        &shipped("menus/kommunsupport.yaml"),
        &prompts_dir(),
        &telephone_wav,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(menu.name, "Kommunsupport");
    let ids: Vec<&str> = menu.functions.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "it",
            "kundtjanst",
            "personal",
            "procapita",
            "raindance",
            "treserva",
            "upphandling"
        ]
    );
    for (port, id) in [(5071, "kundtjanst"), (5072, "personal")]
        .into_iter()
        .chain((5074..).zip(["raindance", "upphandling", "treserva", "procapita"]))
    {
        assert_eq!(
            menu.functions[id].target,
            format!("sip:{id}@127.0.0.1:{port}")
        );
        assert_eq!(menu.functions[id].transfer, TransferMode::Bridge);
    }
    assert_eq!(
        menu.functions["kundtjanst"].ring_timeout,
        Duration::from_secs(45)
    );
    assert_eq!(
        menu.functions["kundtjanst"].on_failure,
        FailureAction::Hangup
    );
    let it = &menu.functions["it"];
    assert_eq!(it.transfer, TransferMode::Queue);
    assert_eq!(it.on_failure, FailureAction::Route("kundtjanst".into()));
    let queue = it.queue.as_ref().unwrap();
    assert_eq!(
        queue.agents,
        [
            QueueAgent::Registered("it-anna".into()),
            QueueAgent::Registered("it-bo".into()),
            QueueAgent::Fixed("sip:it@127.0.0.1:5073".into()),
        ]
    );
    assert_eq!(
        (
            queue.strategy,
            queue.ring_timeout,
            queue.wrap_up,
            queue.max_wait
        ),
        (
            Strategy::LongestIdle,
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(600)
        )
    );
    assert_eq!(queue.music, "hold-music");
    assert_eq!(queue.announce_position, Some(Duration::from_secs(45)));

    let root = menu.root();
    assert_eq!(root.greeting.as_deref(), Some("welcome"));
    assert_eq!(root.timeout, Duration::from_secs(5));
    assert_eq!(root.options[&'3'], Choice::Route("it".into()));
    assert_eq!(root.options[&'6'], Choice::Menu("care".into()));
    assert_eq!(root.options[&'*'], Choice::Repeat);
    assert_eq!(root.fallback, Choice::Route("kundtjanst".into()));
    let care = &menu.menus["care"];
    assert_eq!(care.options[&'1'], Choice::Route("treserva".into()));
    assert_eq!(care.options[&'2'], Choice::Route("procapita".into()));
    assert_eq!(care.options[&'#'], Choice::Back);
    assert_eq!(menu.menus.len(), 2);

    assert!(unreachable_menus(&menu).is_empty());
    assert!(unreachable_functions(&menu).is_empty());
}

#[test]
fn the_shipped_prompts_are_small_and_all_used() {
    let menu = load(
        &shipped("menus/kommunsupport.yaml"),
        &prompts_dir(),
        &any_file,
    )
    .unwrap();
    let used = menu.prompt_ids();
    let mut total = 0;
    let mut on_disk = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(prompts_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wav") {
            let size = std::fs::metadata(&path).unwrap().len();
            assert!(size < 220_000, "{} is {size} bytes", path.display());
            total += size;
            on_disk.insert(path.file_stem().unwrap().to_str().unwrap().to_owned());
        }
    }
    assert!(total < 1_500_000, "prompts total {total} bytes");
    assert_eq!(
        on_disk, used,
        "every shipped prompt is used, every used prompt is shipped"
    );
}

#[test]
fn check_report_summarises_the_shipped_menu() {
    let path = shipped("menus/kommunsupport.yaml");
    let (text, ok) = check_report(&path, &prompts_dir(), &telephone_wav, None);
    assert!(ok, "{text}");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{}: ok: 7 functions, 2 menus, 37 prompts", path.display()).as_str())
    );
    // The shipped prompts are espeak-ng renders of prompts/text.yaml, listed in prompts/.drafts.
    let note = lines.next().unwrap_or_default();
    assert!(
        note.contains("note: 36 prompts are still drafts") && note.contains("welcome"),
        "{text}"
    );
    assert_eq!(lines.next(), None, "{text}");
}

#[test]
fn check_report_notes_parked_menus_and_lists_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(
        &path,
        format!("{MINIMAL}menus:\n  parked:\n    prompt: care-menu\n"),
    )
    .unwrap();
    // Only the prompts this menu uses, so that no warning about unused ones joins the notes.
    let prompts = dir.path().join("prompts");
    std::fs::create_dir_all(&prompts).unwrap();
    for id in ["main-menu", "care-menu"] {
        std::fs::write(prompts.join(format!("{id}.wav")), b"").unwrap();
    }
    let (text, ok) = check_report(&path, &prompts, &any_file, None);
    assert!(ok);
    let label = path.display();
    assert_eq!(
        text,
        format!(
            "{label}: ok: 2 functions, 2 menus, 2 prompts\n\
             {label}: note: menu 'parked' is not reachable from the top menu\n\
             {label}: note: function 'kundtjanst' is not reachable from any menu"
        )
    );

    std::fs::write(&path, MINIMAL.replace("route: it", "route: itt")).unwrap();
    let (text, ok) = check_report(&path, &prompts_dir(), &any_file, None);
    assert!(!ok);
    assert_eq!(
        text,
        format!(
            "{label}:12:19: error: route to undefined function 'itt'\n  \
             help: define 'itt' under `functions:`, or use one of: it, kundtjanst\n\n1 error"
        )
    );
}

#[test]
fn defaults_fill_what_the_admin_leaves_out() {
    let menu = load_inline(MINIMAL).unwrap();
    let it = &menu.functions["it"];
    assert_eq!(it.name, "IT Kundservice");
    assert_eq!(it.transfer, TransferMode::Bridge);
    assert_eq!(it.ring_timeout, Duration::from_secs(30));
    assert_eq!(it.on_failure, FailureAction::Hangup);
    assert_eq!(it.transfer_prompt, None);
    let root = &menu.menus[ROOT_MENU];
    assert_eq!(root.id, ROOT_MENU);
    assert_eq!(root.timeout, Duration::from_secs(5));
    assert_eq!(root.retries, 2);
    assert_eq!(root.fallback, Choice::Hangup);
    assert_eq!(root.greeting, None);
}

#[test]
fn every_documented_key_is_read() {
    let source = "\
name: Full
functions:
  it:
    name: IT
    target: sips:it@vaxel.kommun.se
    transfer: refer
    ring_timeout: 1m30s
    transfer_prompt: transfer-it
    failure_prompt: function-busy
    on_failure: { route: kundtjanst }
  kundtjanst:
    name: Kundtjänst
    target: sip:kundtjanst@[::1]:5071
menu:
  greeting: welcome
  prompt: main-menu
  timeout: 1.5s
  retries: 0
  invalid: invalid-choice
  options:
    1: { route: it }
    \"9\": { menu: more }
    \"0\": { hangup: true }
    \"*\": { repeat: true }
  fallback: { menu: more }
menus:
  more:
    prompt: care-menu
    timeout: 500ms
    options:
      \"#\": { back: true }
    fallback: { back: true }
";
    let menu = load_inline(source).unwrap_or_else(|e| panic!("{e}"));
    let it = &menu.functions["it"];
    assert_eq!(it.target, "sips:it@vaxel.kommun.se");
    assert_eq!(it.transfer, TransferMode::Refer);
    assert_eq!(it.ring_timeout, Duration::from_secs(90));
    assert_eq!(it.transfer_prompt.as_deref(), Some("transfer-it"));
    assert_eq!(it.failure_prompt.as_deref(), Some("function-busy"));
    let root = menu.root();
    assert_eq!(root.timeout, Duration::from_millis(1500));
    assert_eq!(root.retries, 0);
    assert_eq!(root.invalid.as_deref(), Some("invalid-choice"));
    assert_eq!(root.options[&'1'], Choice::Route("it".into()));
    assert_eq!(root.options[&'0'], Choice::Hangup);
    assert_eq!(root.fallback, Choice::Menu("more".into()));
    assert_eq!(menu.menus["more"].timeout, Duration::from_millis(500));
    assert_eq!(menu.menus["more"].fallback, Choice::Back);
}

#[test]
fn route_to_an_undefined_function_points_at_the_id() {
    let source = MINIMAL.replace("route: it", "route: itt");
    assert_eq!(
        single(&source),
        (12, 19, "route to undefined function 'itt'".into())
    );
    assert_eq!(
        help_of(&source),
        "define 'itt' under `functions:`, or use one of: it, kundtjanst"
    );
}

#[test]
fn a_missing_submenu_points_at_its_id() {
    let source =
        format!("{MINIMAL}    \"9\": {{ menu: mer }}\nmenus:\n  more:\n    prompt: care-menu\n");
    assert_eq!(
        single(&source),
        (13, 18, "submenu 'mer' is not defined".into())
    );
    assert_eq!(
        help_of(&source),
        "define 'mer' under `menus:`, or use one of: more, root"
    );
}

#[test]
fn on_failure_must_name_a_defined_other_function() {
    let source = MINIMAL.replace(
        "    target: sip:it@127.0.0.1:5073\n",
        "    target: sip:it@127.0.0.1:5073\n    on_failure: { route: vaxel }\n",
    );
    assert_eq!(
        single(&source),
        (6, 26, "route to undefined function 'vaxel'".into())
    );
    let source = MINIMAL.replace(
        "    target: sip:it@127.0.0.1:5073\n",
        "    target: sip:it@127.0.0.1:5073\n    on_failure: { route: it }\n",
    );
    assert_eq!(
        single(&source),
        (6, 19, "function 'it' fails over to itself".into())
    );
    let source = MINIMAL.replace(
        "    target: sip:it@127.0.0.1:5073\n",
        "    target: sip:it@127.0.0.1:5073\n    on_failure: { menu: root }\n",
    );
    assert_eq!(
        single(&source),
        (6, 19, "`menu` cannot follow a failed hand-off".into())
    );
}

#[test]
fn an_unknown_key_is_named_with_the_allowed_ones() {
    let source = MINIMAL.replace("  prompt: main-menu", "  promt: main-menu");
    let errors = errors(&source);
    // The check goes on after the unknown key, and so also finds the prompt missing.
    assert_eq!(errors.len(), 2, "{}", MenuErrors(errors.clone()));
    assert!(
        errors[1].message.contains("has no `prompt:`"),
        "{}",
        errors[1]
    );
    assert_eq!((errors[0].line, errors[0].column), (10, 3));
    assert_eq!(errors[0].message, "unknown key 'promt'");
    assert_eq!(
        errors[0].help,
        "did you mean 'prompt'? allowed here: greeting, prompt, timeout, retries, invalid, options, fallback"
    );

    let source = format!("{MINIMAL}greting: welcome\n");
    assert_eq!(single(&source), (13, 1, "unknown key 'greting'".into()));
    assert_eq!(
        help_of(&source),
        "allowed here: name, functions, menu, menus, hours, languages"
    );
}

#[test]
fn option_keys_are_single_telephone_keys() {
    let source = format!(
        "{MINIMAL}    \"12\": {{ route: it }}\n    a: {{ route: it }}\n    \"**\": {{ route: it }}\n    7: {{ route: it }}\n"
    );
    let found: Vec<(usize, usize, String)> = errors(&source)
        .into_iter()
        .map(|e| (e.line, e.column, e.message))
        .collect();
    assert_eq!(
        found,
        [
            (13, 5, "'12' is not a telephone key".to_owned()),
            (14, 5, "'a' is not a telephone key".to_owned()),
            (15, 5, "'**' is not a telephone key".to_owned()),
        ]
    );
}

#[test]
fn an_unquoted_and_a_quoted_digit_are_the_same_key() {
    let source = format!("{MINIMAL}    1: {{ route: kundtjanst }}\n");
    assert_eq!(
        single(&source),
        (13, 5, "key '1' is given twice in this menu".into())
    );
    assert_eq!(help_of(&source), "the first is at line 12; keep one");
}

#[test]
fn unquoted_star_and_hash_keys_are_caught_before_yaml_hides_them() {
    let source = format!("{MINIMAL}    *: {{ repeat: true }}\n    #: {{ back: true }}\n");
    let errors = errors(&source);
    let found: Vec<(usize, usize, &str)> = errors
        .iter()
        .map(|e| (e.line, e.column, e.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (13, 5, "the key * must be quoted"),
            (14, 5, "the key # must be quoted"),
        ]
    );
    assert_eq!(
        errors[1].help,
        "write \"#\": ... ; unquoted, YAML reads # as the start of a comment"
    );
    // Comments and quoted keys are left alone.
    let fine = format!(
        "# Huvudmeny\n{MINIMAL}    \"*\": {{ repeat: true }}  # igen\n    #  \"#\": {{ back: true }}\n"
    );
    assert!(load_inline(&fine).is_ok());
}

#[test]
fn an_alias_to_an_unknown_anchor_is_explained() {
    let source = format!("{MINIMAL}    \"2\": *other\n");
    let (line, column, message) = single(&source);
    assert_eq!((line, column), (13, 10));
    assert!(message.contains("alias"), "{message}");
}

#[test]
fn durations_are_checked_where_they_are_written() {
    let with_timeout = |t: &str| {
        MINIMAL.replace(
            "  prompt: main-menu\n",
            &format!("  prompt: main-menu\n  timeout: {t}\n"),
        )
    };
    assert_eq!(
        single(&with_timeout("5")),
        (11, 12, "'5' has no unit".into())
    );
    assert_eq!(
        help_of(&with_timeout("5")),
        "write 5s for seconds or 5ms for milliseconds"
    );
    assert_eq!(
        single(&with_timeout("0s")),
        (11, 12, "`timeout:` cannot be 0".into())
    );
    assert_eq!(
        single(&with_timeout("2h")),
        (11, 12, "`timeout: 2h` is longer than an hour".into())
    );
    assert_eq!(
        single(&with_timeout("5 sec")),
        (11, 12, "unknown unit 'sec' in '5 sec'".into())
    );
    assert_eq!(
        help_of(&with_timeout("5 sec")),
        "write s instead of sec; the units are ms, s, m and h: 500ms, 5s, 1.5s, 2m, 1m30s or 1h"
    );
    assert_eq!(
        single(&with_timeout("5sec")),
        (11, 12, "unknown unit 'sec' in '5sec'".into())
    );
    let ring = MINIMAL.replace(
        "    target: sip:it@127.0.0.1:5073\n",
        "    target: sip:it@127.0.0.1:5073\n    ring_timeout: 0ms\n",
    );
    assert_eq!(single(&ring), (6, 19, "`ring_timeout:` cannot be 0".into()));
    assert_eq!(help_of(&ring), "leave it out for the default (30s)");
}

#[test]
fn retries_are_a_small_whole_number() {
    for bad in ["-1", "11", "two", "1.5"] {
        let source = MINIMAL.replace(
            "  prompt: main-menu\n",
            &format!("  prompt: main-menu\n  retries: {bad}\n"),
        );
        assert_eq!(
            single(&source),
            (
                11,
                12,
                format!("retries '{bad}' is not a number from 0 to 10")
            )
        );
    }
}

#[test]
fn targets_must_be_sip_uris_with_a_host() {
    let with_target = |t: &str| MINIMAL.replace("sip:it@127.0.0.1:5073", t);
    assert_eq!(
        single(&with_target("it@127.0.0.1")),
        (
            5,
            13,
            "target 'it@127.0.0.1' is not a sip: or sips: URI".into()
        )
    );
    assert_eq!(
        single(&with_target("\"http://it.kommun.se\"")),
        (
            5,
            13,
            "target 'http://it.kommun.se' is not a sip: or sips: URI".into()
        )
    );
    assert_eq!(
        single(&with_target("sip:it@")),
        (
            5,
            13,
            "target 'sip:it@' is not a SIP URI: rsip error: could not parse part: empty host"
                .into()
        )
    );
    assert_eq!(
        single(&with_target("sip:it@host,x")),
        (5, 13, "target 'sip:it@host,x' has no valid host".into())
    );
    assert_eq!(
        single(&with_target("\"sip:it@10.0.0.5 :5060\"")),
        (
            5,
            13,
            "target 'sip:it@10.0.0.5 :5060' contains a space".into()
        )
    );
    assert!(load_inline(&with_target("sip:it@it.kommun.se;transport=tcp")).is_ok());
}

#[test]
fn transfer_mode_is_bridge_or_refer() {
    let source = MINIMAL.replace(
        "    target: sip:it@127.0.0.1:5073\n",
        "    target: sip:it@127.0.0.1:5073\n    transfer: blind\n",
    );
    assert_eq!(
        single(&source),
        (6, 15, "unknown transfer mode 'blind'".into())
    );
}

#[test]
fn a_missing_prompt_file_is_named_with_close_names() {
    let source = MINIMAL.replace("prompt: main-menu", "prompt: main-meny");
    let dir = prompts_dir();
    assert_eq!(
        single(&source),
        (
            10,
            11,
            format!(
                "prompt file not found: {}",
                dir.join("main-meny.wav").display()
            )
        )
    );
    assert_eq!(
        help_of(&source),
        "did you mean: main-menu? Otherwise record it or fix the id"
    );
    let source = MINIMAL.replace("prompt: main-menu", "prompt: xyz");
    assert_eq!(help_of(&source), "record it (8 kHz mono WAV) or fix the id");
}

#[test]
fn a_missing_prompt_is_reported_at_every_use_but_probed_once() {
    let source = MINIMAL.replace(
        "  prompt: main-menu\n",
        "  greeting: main-menu\n  prompt: main-menu\n  invalid: welcome\n",
    );
    let probed = std::cell::RefCell::new(Vec::new());
    let refuse_main_menu = |path: &Path| {
        probed.borrow_mut().push(path.to_owned());
        if path.ends_with("main-menu.wav") {
            Err("A-law at 44100 Hz".to_owned())
        } else {
            Ok(())
        }
    };
    let errors = load_str(&source, "t.yaml", &prompts_dir(), &refuse_main_menu)
        .unwrap_err()
        .0;
    let positions: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(positions, [(10, 13), (11, 11)]);
    let path = prompts_dir().join("main-menu.wav");
    assert_eq!(
        errors[0].message,
        format!(
            "prompt file {} cannot be played: A-law at 44100 Hz",
            path.display()
        )
    );
    assert_eq!(probed.borrow().len(), 2, "main-menu and welcome, once each");
}

#[test]
fn prompt_ids_cannot_leave_the_prompts_directory() {
    let source = MINIMAL.replace("prompt: main-menu", "prompt: ../../etc/passwd");
    assert_eq!(
        single(&source),
        (10, 11, "'../../etc/passwd' is not a valid prompt id".into())
    );
    let source = MINIMAL.replace("prompt: main-menu", "prompt: main-menu.wav");
    assert_eq!(help_of(&source), "write the id without .wav: main-menu");
}

#[test]
fn syntax_errors_carry_the_parsers_position() {
    let source = MINIMAL.replace("name: Test", "name: 'Test");
    let (line, column, message) = single(&source);
    assert_eq!((line, column), (1, 7));
    assert!(message.contains("quote"), "{message}");

    let source = MINIMAL.replace("    \"1\": { route: it }", "    \"1\": { route: it");
    let (line, _, message) = single(&source);
    assert_eq!(line, 12);
    assert!(message.contains("'{'"), "{message}");

    let source = MINIMAL.replace("  prompt: main-menu", "\tprompt: main-menu");
    let (line, column, message) = single(&source);
    assert_eq!((line, column), (10, 2));
    assert!(message.contains("tab"), "{message}");
}

#[test]
fn a_wrong_kind_of_value_is_named_plainly() {
    let source = MINIMAL.replace(
        "  prompt: main-menu\n",
        "  prompt: main-menu\n  retries: { a: 1 }\n",
    );
    assert_eq!(
        single(&source),
        (
            11,
            12,
            "a single value belongs here, not a list or a mapping".into()
        )
    );
    assert_eq!(
        single("- name\n- menu\n"),
        (1, 1, "a mapping (`key: value` lines) belongs here".into())
    );
    assert_eq!(
        single(&format!("{MINIMAL}---\nname: Two\n")),
        (
            13,
            1,
            "the menu file holds more than one YAML document".into()
        )
    );
}

#[test]
fn a_repeated_yaml_key_is_reported_by_position() {
    let source = MINIMAL.replace(
        "  prompt: main-menu\n",
        "  prompt: main-menu\n  prompt: welcome\n",
    );
    assert_eq!(
        single(&source),
        (
            11,
            3,
            "'prompt' is given twice in the same mapping: first at line 10, column 3, again here"
                .into()
        )
    );
}

#[test]
fn every_unknown_and_repeated_key_is_reported_and_the_rest_still_checked() {
    let source = MINIMAL
        .replace(
            "  prompt: main-menu\n",
            "  prompt: main-menu\n  timout: 5s\n  timeout: 5 sec\n",
        )
        .replace(
            "    target: sip:it@127.0.0.1:5073\n",
            "    target: sip:it@127.0.0.1:5073\n    target: sip:x@127.0.0.1:5073\n",
        );
    let source = format!("{source}colour: blue\n");
    let errors = errors(&source);
    let text = MenuErrors(errors.clone()).to_string();
    let find = |needle: &str| {
        errors
            .iter()
            .find(|e| e.message.contains(needle))
            .unwrap_or_else(|| panic!("no error with {needle:?}:\n{text}"))
    };
    assert_eq!(find("unknown key 'timout'").line, 12, "{text}");
    assert_eq!(find("unknown key 'colour'").line, 16, "{text}");
    let twice = find("'target' is given twice");
    assert_eq!(twice.line, 6, "{text}");
    assert!(
        twice.message.contains("first at line 5, column 5"),
        "{text}"
    );
    assert_eq!(find("unknown unit 'sec'").line, 13, "{text}");
    assert_eq!(errors.len(), 4, "{text}");
}

#[test]
fn an_alias_bomb_is_refused_by_the_budget() {
    // Nine levels of nine aliases: 9^9 nodes if expanded. Parsed where a choice belongs, so only the budget
    // stands between it and the expansion.
    let mut bomb = String::from(
        "name: Bomb\nmenu:\n  prompt: main-menu\n  x0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for level in 1..10 {
        let refs = vec![format!("*l{}", level - 1); 9].join(", ");
        bomb.push_str(&format!("  x{level}: &l{level} [{refs}]\n"));
    }
    let (line, _, message) = single(&bomb);
    assert!(message.starts_with("menu file refused: "), "{message}");
    assert!((4..=13).contains(&line));
}

#[test]
fn deep_nesting_is_refused_by_the_budget() {
    let source = format!("name: Deep\nmenu: {}{}\n", "[".repeat(200), "]".repeat(200));
    let (line, _, message) = single(&source);
    assert_eq!(line, 2);
    assert!(message.starts_with("menu file refused: "), "{message}");
}

#[test]
fn all_semantic_errors_are_collected_in_file_order() {
    let source = "\
name: Many
functions:
  it:
    name: IT
    target: it@127.0.0.1
menu:
  prompt: main-menu
  timeout: 5
  options:
    \"1\": { route: itt }
    \"2\": { menu: nowhere }
    \"x\": { hangup: true }
  fallback: { repeat: true }
menus:
  root:
    prompt: main-menu
";
    let found: Vec<(usize, usize)> = errors(source).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        found,
        [
            (5, 13),
            (8, 12),
            (10, 19),
            (11, 18),
            (12, 5),
            (13, 15),
            (15, 3)
        ]
    );
}

#[test]
fn a_choice_of_the_wrong_shape_says_how_to_write_it() {
    let option = |choice: &str| format!("{MINIMAL}    \"2\": {choice}\n");
    assert_eq!(
        single(&option("it")),
        (13, 10, "'it' is not a choice".into())
    );
    assert_eq!(help_of(&option("it")), "write { route: it }");
    assert_eq!(help_of(&option("repeat")), "write { repeat: true }");
    assert_eq!(
        single(&option("{ route: it, menu: root }")),
        (13, 23, "one choice, two actions: 'route' and 'menu'".into())
    );
    assert_eq!(single(&option("{}")), (13, 10, "empty choice".into()));
    assert_eq!(
        single(&option("{ repeat: false }")),
        (13, 20, "`repeat: false` does nothing".into())
    );
    assert_eq!(
        single(&option("{ hangup: }")),
        (13, 12, "`hangup:` takes `true`".into())
    );
    assert_eq!(
        single(&option("{ rout: it }")),
        (13, 12, "unknown action 'rout'".into())
    );
    assert!(help_of(&option("{ rout: it }")).starts_with("did you mean 'route'?"));
}

#[test]
fn fallbacks_that_would_loop_are_refused() {
    let fallback = |choice: &str| format!("{MINIMAL}  fallback: {choice}\n");
    assert_eq!(
        single(&fallback("{ repeat: true }")),
        (
            13,
            15,
            "`repeat` as a fallback would play the menu forever".into()
        )
    );
    assert_eq!(
        single(&fallback("{ back: true }")),
        (13, 15, "`back` from the top menu goes nowhere".into())
    );
    assert_eq!(
        single(&fallback("{ menu: root }")),
        (13, 15, "menu 'root' falls back to itself".into())
    );
}

#[test]
fn menus_whose_fallbacks_lead_into_each_other_are_refused() {
    let source = format!(
        "{MINIMAL}  fallback: {{ menu: a }}\nmenus:\n  b:\n    prompt: care-menu\n    fallback: {{ menu: a }}\n  \
         a:\n    prompt: care-menu\n    fallback: {{ menu: b }}\n"
    );
    assert_eq!(
        single(&source),
        (
            20,
            15,
            "menus fall back into each other forever: a -> b -> a".into()
        )
    );
    // A chain that ends somewhere is fine.
    let source = format!(
        "{MINIMAL}  fallback: {{ menu: a }}\nmenus:\n  a:\n    prompt: care-menu\n    fallback: {{ route: it }}\n"
    );
    assert!(load_inline(&source).is_ok());
}

#[test]
fn ids_are_checked_and_root_is_reserved() {
    let source = format!(
        "{MINIMAL}menus:\n  root:\n    prompt: care-menu\n  \"vård\":\n    prompt: care-menu\n"
    );
    let found: Vec<(usize, usize, String)> = errors(&source)
        .into_iter()
        .map(|e| (e.line, e.column, e.message))
        .collect();
    assert_eq!(
        found,
        [
            (
                14,
                3,
                "the menu id 'root' is reserved for the top menu".to_owned()
            ),
            (16, 3, "'vård' is not a valid menu id".to_owned()),
        ]
    );
}

#[test]
fn whole_file_problems_are_reported_at_the_top() {
    assert_eq!(single(""), (1, 1, "menu file is empty".into()));
    let found: Vec<(usize, usize, String)> = errors("functions: {}\n")
        .into_iter()
        .map(|e| (e.line, e.column, e.message))
        .collect();
    assert_eq!(
        found,
        [
            (1, 1, "the menu file has no `name:`".to_owned()),
            (
                1,
                1,
                "the menu file has no `menu:` (the menu callers hear first)".to_owned()
            ),
        ]
    );
    let huge = format!("name: x\n#{}\n", "a".repeat(1024 * 1024));
    assert!(single(&huge).2.starts_with("menu file is too large"));
}

#[test]
fn load_reports_unreadable_files_at_the_top() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let errors = load(&missing, &prompts_dir(), &any_file).unwrap_err().0;
    assert_eq!((errors[0].line, errors[0].column), (1, 1));
    assert_eq!(errors[0].file, missing.display().to_string());
    assert!(errors[0].message.starts_with("cannot read the menu file"));

    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"name: Kundtj\xe4nst\n").unwrap();
    let errors = load(&latin1, &prompts_dir(), &any_file).unwrap_err().0;
    assert_eq!(
        errors[0].message,
        "the menu file is not UTF-8 text (invalid byte at offset 12)"
    );
}

#[test]
fn a_file_saved_by_notepad_loads_with_the_same_positions() {
    let windows = format!("\u{feff}{}", MINIMAL.replace('\n', "\r\n"));
    assert!(load_inline(&windows).is_ok());
    let broken = windows.replace("route: it", "route: itt");
    assert_eq!(
        single(&broken),
        (12, 19, "route to undefined function 'itt'".into())
    );
}

const QUEUE: &str = "\
name: Test
functions:
  kundtjanst:
    name: Kundtjänst
    target: sip:kundtjanst@127.0.0.1:5071
  it:
    name: IT Kundservice
    transfer: queue
    queue:
      agents: [it-anna, it-bo, sip:it-desk@10.0.0.5]
      strategy: round-robin
      ring_timeout: 20s
      wrap_up: 0s
      max_wait: 2m
      overflow: { route: kundtjanst }
      music: main-menu
      announce_position: 30s
menu:
  prompt: main-menu
  options:
    \"1\": { route: it }
";

#[test]
fn a_queue_function_reads_every_key() {
    let menu = load_inline(QUEUE).unwrap_or_else(|e| panic!("{e}"));
    let it = &menu.functions["it"];
    assert_eq!(it.transfer, TransferMode::Queue);
    assert_eq!(it.target, "");
    assert_eq!(it.on_failure, FailureAction::Route("kundtjanst".into()));
    let queue = it.queue.as_ref().unwrap();
    assert_eq!(
        queue.agents[2],
        QueueAgent::Fixed("sip:it-desk@10.0.0.5".into())
    );
    assert_eq!(queue.strategy, Strategy::RoundRobin);
    assert_eq!(queue.ring_timeout, Duration::from_secs(20));
    assert_eq!(queue.wrap_up, Duration::ZERO);
    assert_eq!(queue.max_wait, Duration::from_secs(120));
    assert_eq!(queue.announce_position, Some(Duration::from_secs(30)));
    assert!(menu.prompt_ids().contains("number-20"));
}

#[test]
fn queue_mistakes_are_reported_where_they_are_written() {
    let cases: [(&str, &str, (usize, usize), &str); 7] = [
        (
            "ring_timeout: 20s",
            "ring_timeout: 20 seconds",
            (12, 21),
            "unknown unit 'seconds'",
        ),
        (
            "max_wait: 2m",
            "max_wait: 2h",
            (14, 17),
            "longer than an hour",
        ),
        (
            "strategy: round-robin",
            "strategy: round-robn",
            (11, 17),
            "unknown queue strategy 'round-robn'",
        ),
        (
            "music: main-menu",
            "music: hold-musik",
            (16, 14),
            "prompt file not found",
        ),
        (
            "overflow: { route: kundtjanst }",
            "overflow: { menu: root }",
            (15, 19),
            "cannot follow a failed hand-off",
        ),
        (
            "agents: [it-anna, it-bo,",
            "agents: [it-anna, it-anna,",
            (10, 25),
            "listed twice",
        ),
        (
            "agents: [it-anna, it-bo, sip:it-desk@10.0.0.5]",
            "agents: [it-anna, sip:it desk]",
            (10, 25),
            "contains a space",
        ),
    ];
    for (from, to, (line, column), message) in cases {
        let source = QUEUE.replace(from, to);
        let errors = errors(&source);
        assert_eq!(errors.len(), 1, "{to}: {}", MenuErrors(errors.clone()));
        assert_eq!(
            (errors[0].line, errors[0].column),
            (line, column),
            "{to}: {}",
            errors[0]
        );
        assert!(errors[0].message.contains(message), "{to}: {}", errors[0]);
    }
    assert!(
        help_of(&QUEUE.replace("round-robin", "round-robn")).contains("did you mean 'round-robin'")
    );
}

#[test]
fn a_queue_needs_agents_and_music_and_no_target_or_on_failure() {
    let without_music = QUEUE.replace("      music: main-menu\n", "");
    assert_eq!(
        single(&without_music),
        (10, 7, "the queue of 'it' has no `music:`".into())
    );
    let without_agents =
        QUEUE.replace("      agents: [it-anna, it-bo, sip:it-desk@10.0.0.5]\n", "");
    assert_eq!(single(&without_agents).2, "the queue of 'it' has no agents");
    // Written out empty it is a team not staffed yet: valid, and `check` warns.
    let unstaffed = QUEUE.replace("[it-anna, it-bo, sip:it-desk@10.0.0.5]", "[]");
    let menu =
        load_str(&unstaffed, "t.yaml", &prompts_dir(), &any_file).expect("an empty queue is valid");
    let warnings = warnings(&menu, &prompts_dir());
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("the queue of 'it' has no agents")),
        "{warnings:?}"
    );
    let with_target = QUEUE.replace(
        "    transfer: queue\n",
        "    transfer: queue\n    target: sip:it@h\n",
    );
    assert_eq!(
        single(&with_target).2,
        "function 'it' is a queue and has no `target:`"
    );
    let with_on_failure = QUEUE.replace(
        "    transfer: queue\n",
        "    transfer: queue\n    on_failure: { hangup: true }\n",
    );
    assert!(single(&with_on_failure).2.contains("its `overflow:`"));
    let no_queue = "name: T\nfunctions:\n  it:\n    name: IT\n    transfer: queue\nmenu:\n  prompt: main-menu\n  options:\n    \"1\": { route: it }\n";
    assert_eq!(
        single(no_queue),
        (5, 15, "function 'it' is a queue with no `queue:`".into())
    );
}

#[test]
fn queue_agents_must_be_in_the_agents_file_when_one_is_given() {
    let known: std::collections::BTreeSet<String> =
        ["it-anna".to_string(), "it-bo".to_string()].into();
    let source = QUEUE.replace("it-bo,", "it-boo,");
    let errors = load_str_with_agents(&source, "t.yaml", &prompts_dir(), &any_file, Some(&known))
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1, "{}", MenuErrors(errors.clone()));
    assert_eq!((errors[0].line, errors[0].column), (10, 25));
    assert_eq!(
        errors[0].message,
        "agent 'it-boo' is not in the agents file"
    );
    assert!(
        errors[0].help.contains("did you mean 'it-bo'"),
        "{}",
        errors[0].help
    );
    // Fixed URIs need no entry; without an agents file any well-formed id passes.
    assert!(load_str_with_agents(QUEUE, "t.yaml", &prompts_dir(), &any_file, Some(&known)).is_ok());
    assert!(load_inline(&source).is_ok());
}
