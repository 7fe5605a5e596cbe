//! The admins' YAML menu: loading with file:line:col errors, validation, and the report `knappval check` prints.
//!
//! Owns nothing at run time: it reads the menu file and probes the prompt files it names, and produces a
//! [`model::Menu`] the rest of the daemon reads. It never plays, decodes or caches audio (that is `media`, reached
//! only through the `probe_prompt` callback) and never touches calls.
//!
//! ```text
//! menus/kommunsupport.yaml:14:20: error: route to undefined function 'itt'
//!   help: define 'itt' under `functions:`, or use one of: it, kundtjanst, personal
//! ```

mod duration;
mod error;
pub mod graph;
pub mod holidays;
pub mod hours;
pub mod model;
mod validate;
mod warnings;
mod yaml;

#[cfg(test)]
mod hours_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::Path;

pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{MenuError, MenuErrors};
pub use validate::{unreachable_functions, unreachable_menus};
pub use warnings::{MAX_MENU_DEPTH, warnings};

/// Whether `id` may name a prompt (a file name without `.wav`: letters, digits, '-' and '_').
pub fn is_prompt_id(id: &str) -> bool {
    validate::is_valid_id(id)
}

use error::{Pos, Report};

/// Loads and validates the menu file at `menu_path`; prompt ids resolve to `prompts_dir/<id>.wav`.
///
/// `probe_prompt` gets the path of every prompt file that exists and says whether it is usable audio; a missing
/// file is reported here without calling it. All problems are returned together, in file order.
pub fn load(
    menu_path: &Path,
    prompts_dir: &Path,
    probe_prompt: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<model::Menu, MenuErrors> {
    load_with_agents(menu_path, prompts_dir, probe_prompt, None)
}

/// Like [`load`]; when `known_agents` is given (the agents file's ids), every queue agent that is an id and
/// not a `sip:` URI must be one of them.
pub fn load_with_agents(
    menu_path: &Path,
    prompts_dir: &Path,
    probe_prompt: &dyn Fn(&Path) -> Result<(), String>,
    known_agents: Option<&BTreeSet<String>>,
) -> Result<model::Menu, MenuErrors> {
    let (source, label) = read(menu_path)?;
    load_str_with_agents(&source, &label, prompts_dir, probe_prompt, known_agents)
}

/// Loads and validates the menu file's shape without looking at prompt files: for drawing the menu, where the
/// recordings do not matter (and may not exist yet).
pub fn load_layout(menu_path: &Path) -> Result<model::Menu, MenuErrors> {
    let (source, label) = read(menu_path)?;
    let mut report = Report::new(&label);
    let Some(raw) = yaml::parse(&source, &mut report) else {
        return Err(report.into_errors());
    };
    let no_files = Path::new("");
    match validate::Validator::new(&mut report, no_files)
        .without_prompt_files()
        .validate(raw, &|_| Ok(()))
    {
        Some(menu) if report.is_empty() => Ok(menu),
        _ => Err(report.into_errors()),
    }
}

/// The menu file's text and the label its errors name it by.
fn read(menu_path: &Path) -> Result<(String, String), MenuErrors> {
    let label = menu_path.display().to_string();
    let refuse = |message: String, help: &str| {
        let mut report = Report::new(&label);
        report.error(Pos::FILE, message, help);
        report.into_errors()
    };
    // Checked before reading, so that pointing knappval at a disk image does not fill memory first.
    if let Ok(metadata) = std::fs::metadata(menu_path)
        && metadata.len() > yaml::MAX_MENU_BYTES as u64
    {
        return Err(refuse(
            format!(
                "menu file is too large ({} bytes, at most {})",
                metadata.len(),
                yaml::MAX_MENU_BYTES
            ),
            "a menu is a few kilobytes of YAML; check that this is the right file",
        ));
    }
    let bytes = std::fs::read(menu_path).map_err(|error| {
        refuse(
            format!("cannot read the menu file: {error}"),
            "check the path given with --menu and the file's permissions",
        )
    })?;
    let source = String::from_utf8(bytes).map_err(|error| {
        refuse(
            format!(
                "the menu file is not UTF-8 text (invalid byte at offset {})",
                error.utf8_error().valid_up_to()
            ),
            "save the file as UTF-8 (Notepad: Save as, Encoding UTF-8)",
        )
    })?;
    Ok((source, label))
}

/// Like [`load`], for menu text already in memory; `file_label` is what errors name as the file.
pub fn load_str(
    source: &str,
    file_label: &str,
    prompts_dir: &Path,
    probe_prompt: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<model::Menu, MenuErrors> {
    load_str_with_agents(source, file_label, prompts_dir, probe_prompt, None)
}

/// Like [`load_str`], checking queue agents against `known_agents` as [`load_with_agents`] does.
pub fn load_str_with_agents(
    source: &str,
    file_label: &str,
    prompts_dir: &Path,
    probe_prompt: &dyn Fn(&Path) -> Result<(), String>,
    known_agents: Option<&BTreeSet<String>>,
) -> Result<model::Menu, MenuErrors> {
    let mut report = Report::new(file_label);
    let Some(raw) = yaml::parse(source, &mut report) else {
        return Err(report.into_errors());
    };
    let validator =
        validate::Validator::new(&mut report, prompts_dir).with_known_agents(known_agents);
    match validator.validate(raw, probe_prompt) {
        Some(menu) if report.is_empty() => Ok(menu),
        _ => Err(report.into_errors()),
    }
}

/// What `knappval check` prints, and whether the menu is usable.
///
/// On success: `menus/kommunsupport.yaml: ok: 7 functions, 2 menus, 13 prompts`, followed by a `note:` line for
/// each menu or function that callers cannot reach (allowed, but usually an oversight), then a `warning:` line
/// for each of [`warnings`] (prompts never used, options that cannot be reached, menus nested too deep, hours
/// never open). Warnings leave the menu usable.
/// With `known_agents` (from `--agents`), queue agents are checked against the agents file too.
pub fn check_report(
    menu_path: &Path,
    prompts_dir: &Path,
    probe_prompt: &dyn Fn(&Path) -> Result<(), String>,
    known_agents: Option<&BTreeSet<String>>,
) -> (String, bool) {
    match load_with_agents(menu_path, prompts_dir, probe_prompt, known_agents) {
        Err(errors) => (errors.to_string(), false),
        Ok(menu) => {
            let label = menu_path.display().to_string();
            let mut text = summary(&label, &menu);
            for warning in warnings(&menu, prompts_dir) {
                text.push_str(&format!("\n{label}: warning: {warning}"));
            }
            (text, true)
        }
    }
}

fn summary(label: &str, menu: &model::Menu) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut text = format!(
        "{label}: ok: {}, {}, {}",
        plural(menu.functions.len(), "function", "functions"),
        plural(menu.menus.len(), "menu", "menus"),
        plural(menu.prompt_ids().len(), "prompt", "prompts"),
    );
    for id in unreachable_menus(menu) {
        text.push_str(&format!(
            "\n{label}: note: menu '{id}' is not reachable from the top menu"
        ));
    }
    for id in unreachable_functions(menu) {
        text.push_str(&format!(
            "\n{label}: note: function '{id}' is not reachable from any menu"
        ));
    }
    text
}
