//! Draft prompts: a menu's prompts rendered from their text with espeak-ng (and sox, to the 8 kHz mono 16-bit
//! WAV the media path plays without conversion), so a menu can be tried before its recordings exist, and the
//! `.drafts` file in the prompts folder that tells such a draft from a recording.
//!
//! `.drafts` lists each draft's id with the SHA-256 of the file as written. A file whose content no longer matches
//! (a recording copied over it) is a recording, whatever the list says: nobody has to remember to edit the list.
//! Owns no audio decoding; `knappval check` reads [`Drafts`] to list the prompts still drafts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::media::prompt::prompt_path;
use crate::menu::model::PromptId;

/// The sidecar in the prompts folder listing the drafts.
pub const DRAFTS_FILE: &str = ".drafts";

/// What went wrong rendering drafts; each names the file or tool and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(
        "{tool} is not installed: it renders draft prompts (Debian/Ubuntu: apt-get install {package})"
    )]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    #[error("{tool} failed for prompt '{id}' ({status}): {stderr}")]
    ToolFailed {
        tool: &'static str,
        id: String,
        status: String,
        stderr: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{file}: {message}\n  help: write one prompt a line, its id and its text: welcome: \"Välkommen till ...\""
    )]
    Texts { file: String, message: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The prompt texts file: `id: "text"` lines.
pub fn read_texts(path: &Path) -> Result<BTreeMap<PromptId, String>, SynthError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    serde_saphyr::from_str::<BTreeMap<PromptId, String>>(&text).map_err(|e| SynthError::Texts {
        file: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The drafts listed in a prompts folder's `.drafts`, by id, with the hash each file had when written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drafts {
    written: BTreeMap<PromptId, String>,
}

impl Drafts {
    /// The list in `prompts_dir`; empty when there is none. Lines it cannot read are skipped: at worst a draft
    /// then counts as a recording.
    pub fn load(prompts_dir: &Path) -> Drafts {
        let text = std::fs::read_to_string(prompts_dir.join(DRAFTS_FILE)).unwrap_or_default();
        let written = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (id, hash) = line.trim().split_once(' ')?;
                Some((id.to_string(), hash.trim().to_string()))
            })
            .collect();
        Drafts { written }
    }

    /// Whether `id`'s file is the draft as written (not since replaced by a recording).
    pub fn is_draft(&self, prompts_dir: &Path, id: &str) -> bool {
        self.written.get(id).is_some_and(|hash| {
            file_hash(&prompt_path(prompts_dir, id)).is_ok_and(|now| now == *hash)
        })
    }

    /// Those of `ids` that are still drafts.
    pub fn among<'a>(
        &self,
        prompts_dir: &Path,
        ids: impl IntoIterator<Item = &'a PromptId>,
    ) -> Vec<PromptId> {
        ids.into_iter()
            .filter(|id| self.is_draft(prompts_dir, id))
            .cloned()
            .collect()
    }

    fn save(&self, prompts_dir: &Path) -> Result<(), SynthError> {
        let path = prompts_dir.join(DRAFTS_FILE);
        let mut text = String::from(
            "# Draft prompts written by `knappval prompts synth`: id and the SHA-256 of the file as written.\n\
             # A file that no longer matches is a recording. `knappval check` lists the drafts still in use.\n",
        );
        for (id, hash) in &self.written {
            text.push_str(&format!("{id} {hash}\n"));
        }
        // Written aside and renamed, so a crash leaves the old list or the new one, never half of one.
        let partial = prompts_dir.join(format!("{DRAFTS_FILE}.partial"));
        std::fs::write(&partial, text).map_err(io_error(&partial))?;
        std::fs::rename(&partial, &path).map_err(io_error(&path))
    }
}

fn file_hash(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// How to render.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// The espeak-ng voice, e.g. `sv` or `en`.
    pub voice: String,
    /// Replace recordings too.
    pub force: bool,
}

/// What happened to one of the menu's prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// A draft was written to this file.
    Written(PathBuf),
    /// The file is a recording and was left alone (no `--force`).
    KeptRecording(PathBuf),
    /// No text for it and no file: the menu cannot be tried yet.
    NoText,
    /// A recording exists and the texts have none: nothing to do.
    Recorded(PathBuf),
}

/// Renders a draft of each of `ids` that has a text, into `prompts_dir`, skipping recordings unless `force`.
/// Checks for espeak-ng and sox before writing anything.
pub fn synth(
    ids: &BTreeSet<PromptId>,
    texts: &BTreeMap<PromptId, String>,
    prompts_dir: &Path,
    options: &SynthOptions,
) -> Result<Vec<(PromptId, Rendered)>, SynthError> {
    require_tool("espeak-ng", "espeak-ng")?;
    require_tool("sox", "sox")?;
    std::fs::create_dir_all(prompts_dir).map_err(io_error(prompts_dir))?;
    let mut drafts = Drafts::load(prompts_dir);
    let scratch = tempdir_in(prompts_dir)?;
    let mut results = Vec::new();
    for id in ids {
        let path = prompt_path(prompts_dir, id);
        let exists = path.exists();
        let Some(text) = texts.get(id) else {
            results.push((
                id.clone(),
                if exists {
                    Rendered::Recorded(path)
                } else {
                    Rendered::NoText
                },
            ));
            continue;
        };
        if exists && !options.force && !drafts.is_draft(prompts_dir, id) {
            results.push((id.clone(), Rendered::KeptRecording(path)));
            continue;
        }
        let spoken = scratch.join(format!("{id}.espeak.wav"));
        run_tool(
            "espeak-ng",
            id,
            Command::new("espeak-ng")
                .args(["-v", &options.voice, "-s", "175", "-p", "45", "-w"])
                .arg(&spoken)
                .arg(text),
        )?;
        // Beside the target, then renamed over it: the daemon's watcher never sees half a file.
        let converted = scratch.join(format!("{id}.wav"));
        run_tool(
            "sox",
            id,
            Command::new("sox")
                // No dither: the same text gives the same bytes, so re-rendering shows no diff.
                .arg("-D")
                .arg(&spoken)
                .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
                .arg(&converted)
                .args(["gain", "-n", "-3", "pad", "0", "0.3"]),
        )?;
        std::fs::rename(&converted, &path).map_err(io_error(&path))?;
        let hash = file_hash(&path).map_err(io_error(&path))?;
        drafts.written.insert(id.clone(), hash);
        results.push((id.clone(), Rendered::Written(path)));
    }
    drafts.save(prompts_dir)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(results)
}

/// A scratch folder inside the prompts folder (same file system, so the rename into place is atomic).
fn tempdir_in(prompts_dir: &Path) -> Result<PathBuf, SynthError> {
    let dir = prompts_dir.join(format!(".synth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    Ok(dir)
}

fn require_tool(tool: &'static str, package: &'static str) -> Result<(), SynthError> {
    match Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(SynthError::ToolMissing { tool, package })
        }
        Err(source) => Err(SynthError::Io {
            path: PathBuf::from(tool),
            source,
        }),
    }
}

fn run_tool(tool: &'static str, id: &str, command: &mut Command) -> Result<(), SynthError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SynthError::Io {
            path: PathBuf::from(tool),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if stderr.is_empty() {
        stderr = "no message".into();
    }
    Err(SynthError::ToolFailed {
        tool,
        id: id.to_string(),
        status: output.status.to_string(),
        stderr,
    })
}

/// One line per prompt for the terminal, and whether the menu can be tried (every prompt has a file).
pub fn report(results: &[(PromptId, Rendered)], texts_file: &Path) -> (String, bool) {
    let mut out = Vec::new();
    let mut complete = true;
    for (id, rendered) in results {
        out.push(match rendered {
            Rendered::Written(path) => format!("{}: draft written", path.display()),
            Rendered::KeptRecording(path) => format!(
                "{}: kept: a recording, not a draft (--force replaces it)",
                path.display()
            ),
            Rendered::Recorded(path) => format!("{}: recorded", path.display()),
            Rendered::NoText => {
                complete = false;
                format!(
                    "{id}: no recording and no text: add `{id}: \"...\"` to {}",
                    texts_file.display()
                )
            }
        });
    }
    if out.is_empty() {
        out.push("the menu names no prompts".into());
    }
    (out.join("\n"), complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_replaced_by_a_recording_is_no_longer_a_draft() {
        let dir = tempfile::tempdir().unwrap();
        let prompts = dir.path();
        std::fs::write(prompts.join("welcome.wav"), b"draft").unwrap();
        std::fs::write(prompts.join("menu.wav"), b"recorded").unwrap();
        let mut drafts = Drafts::default();
        drafts.written.insert(
            "welcome".into(),
            file_hash(&prompts.join("welcome.wav")).unwrap(),
        );
        drafts.save(prompts).unwrap();
        let loaded = Drafts::load(prompts);
        assert_eq!(loaded, drafts);
        let ids: Vec<PromptId> = vec!["welcome".into(), "menu".into(), "gone".into()];
        assert_eq!(loaded.among(prompts, &ids), vec!["welcome".to_string()]);
        std::fs::write(prompts.join("welcome.wav"), b"a real voice").unwrap();
        assert!(Drafts::load(prompts).among(prompts, &ids).is_empty());
    }

    #[test]
    fn texts_are_id_and_text_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("text.yaml");
        std::fs::write(&file, "welcome: \"Välkommen.\"\nmain-menu: Tryck 1.\n").unwrap();
        let texts = read_texts(&file).unwrap();
        assert_eq!(texts["welcome"], "Välkommen.");
        assert_eq!(texts["main-menu"], "Tryck 1.");
        std::fs::write(&file, "welcome: [1, 2]\n").unwrap();
        let error = read_texts(&file).unwrap_err().to_string();
        assert!(
            error.contains("text.yaml") && error.contains("help"),
            "{error}"
        );
    }
}
