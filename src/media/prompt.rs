//! Prompts ready to send: every prompt the menu may play, converted from WAV once at load and
//! pre-encoded in both G.711 laws, shared by all calls through `Arc`.
//!
//! Owns the prompt cache and the rule `PROMPTS/<id>.wav` (`PROMPTS/<language>/<id>.wav`, kept under the key
//! `<language>/<id>`, for a menu with languages). Never decodes a file per call and
//! never sends anything; the player and the session read frames from here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::codec::{CLOCK_RATE, Codec, FRAME_SAMPLES};
use super::wav::{WavError, read_wav_8k};

/// One recorded announcement, as 8 kHz samples and as ready-made 20 ms G.711 frames.
#[derive(Debug)]
pub struct Prompt {
    pub id: String,
    /// 8 kHz mono, exactly as converted (not padded).
    pub samples: Vec<i16>,
    pcmu: Vec<[u8; FRAME_SAMPLES]>,
    pcma: Vec<[u8; FRAME_SAMPLES]>,
}

impl Prompt {
    /// Encodes 8 kHz mono samples; the last frame is completed with silence.
    pub fn from_samples(id: impl Into<String>, samples: Vec<i16>) -> Prompt {
        let encode = |codec: Codec| -> Vec<[u8; FRAME_SAMPLES]> {
            samples
                .chunks(FRAME_SAMPLES)
                .map(|chunk| {
                    let mut frame = [codec.silence_byte(); FRAME_SAMPLES];
                    codec.encode(chunk, &mut frame);
                    frame
                })
                .collect()
        };
        let pcmu = encode(Codec::Pcmu);
        let pcma = encode(Codec::Pcma);
        Prompt {
            id: id.into(),
            samples,
            pcmu,
            pcma,
        }
    }

    /// `parts` played one after the other, from their ready frames (no re-encoding): a sentence built from
    /// recorded words, such as a place in line. Each part keeps its own padded last frame.
    pub fn concat(id: impl Into<String>, parts: &[Arc<Prompt>]) -> Prompt {
        Prompt {
            id: id.into(),
            samples: parts
                .iter()
                .flat_map(|p| p.samples.iter().copied())
                .collect(),
            pcmu: parts.iter().flat_map(|p| p.pcmu.iter().copied()).collect(),
            pcma: parts.iter().flat_map(|p| p.pcma.iter().copied()).collect(),
        }
    }

    pub fn frames(&self, codec: Codec) -> &[[u8; FRAME_SAMPLES]] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    pub fn frame_count(&self) -> usize {
        self.pcmu.len()
    }

    /// How long the prompt plays: whole frames, so including the padding of the last one.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(
            self.frame_count() as u64 * FRAME_SAMPLES as u64 * 1_000_000 / u64::from(CLOCK_RATE),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("prompt `{id}`: {source}")]
    Load {
        id: String,
        #[source]
        source: WavError,
    },
}

impl PromptError {
    pub fn id(&self) -> &str {
        match self {
            PromptError::Load { id, .. } => id,
        }
    }
}

/// The prompts of one menu version, by id. Cheap to share: clone the `Arc`s it hands out.
#[derive(Debug, Default, Clone)]
pub struct PromptCache {
    prompts: HashMap<String, Arc<Prompt>>,
}

impl PromptCache {
    /// Loads `<dir>/<id>.wav` for every id. Fails on the first prompt that cannot be loaded,
    /// naming it, so a daemon never starts with a menu it cannot play.
    pub fn load(
        dir: &Path,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<PromptCache, PromptError> {
        let mut prompts = HashMap::new();
        for id in ids {
            if prompts.contains_key(&id) {
                continue;
            }
            let samples =
                read_wav_8k(&prompt_path(dir, &id)).map_err(|source| PromptError::Load {
                    id: id.clone(),
                    source,
                })?;
            let prompt = Prompt::from_samples(id.clone(), samples);
            prompts.insert(id, Arc::new(prompt));
        }
        Ok(PromptCache { prompts })
    }

    pub fn insert(&mut self, prompt: Prompt) {
        self.prompts.insert(prompt.id.clone(), Arc::new(prompt));
    }

    pub fn get(&self, id: &str) -> Option<Arc<Prompt>> {
        self.prompts.get(id).cloned()
    }

    /// Prompt `id` in `language`'s folder, or else the one straight in the prompts folder (the language choice,
    /// an announcement recorded once for all).
    pub fn get_in(&self, language: Option<&str>, id: &str) -> Option<Arc<Prompt>> {
        language
            .and_then(|language| self.prompts.get(&format!("{language}/{id}")))
            .or_else(|| self.prompts.get(id))
            .cloned()
    }

    /// Whether prompt `id` is loaded in the prompts folder or in any language's folder.
    pub fn knows(&self, id: &str) -> bool {
        self.prompts.keys().any(|key| {
            key == id
                || key
                    .split_once('/')
                    .is_some_and(|(_, in_language)| in_language == id)
        })
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.prompts.keys().map(String::as_str)
    }
}

/// Where the prompt `id` lives under the prompt directory.
pub fn prompt_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.wav"))
}

/// For `knappval check`: decodes and converts the whole file exactly as loading does, so a
/// prompt that passes the check also loads. The error names the file and the fix.
pub fn probe_wav(path: &Path) -> Result<(), String> {
    read_wav_8k(path).map(drop).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::wav::tests::g711_wav;

    #[test]
    fn frames_are_padded_with_each_codecs_silence() {
        let prompt = Prompt::from_samples("short", vec![1000; 200]);
        assert_eq!(prompt.frame_count(), 2);
        assert_eq!(prompt.duration(), Duration::from_millis(40));
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let frames = prompt.frames(codec);
            assert_eq!(frames[1][39], codec.encode_sample(1000));
            assert!(frames[1][40..].iter().all(|b| *b == codec.silence_byte()));
        }
    }

    #[test]
    fn load_converts_every_prompt_once_and_names_the_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let ulaw = vec![0xFF; 8000];
        std::fs::write(
            dir.path().join("main-menu.wav"),
            g711_wav(7, 1, &ulaw, false),
        )
        .unwrap();
        std::fs::write(dir.path().join("goodbye.wav"), g711_wav(6, 1, &ulaw, false)).unwrap();

        let cache = PromptCache::load(
            dir.path(),
            ["main-menu", "goodbye", "main-menu"].map(String::from),
        )
        .unwrap();
        assert_eq!(cache.len(), 2);
        let menu = cache.get("main-menu").unwrap();
        assert_eq!(menu.duration(), Duration::from_secs(1));
        assert!(Arc::ptr_eq(&menu, &cache.get("main-menu").unwrap()));
        assert!(cache.get("unknown").is_none());

        let error = PromptCache::load(dir.path(), ["main-menu", "it-support"].map(String::from))
            .unwrap_err();
        assert_eq!(error.id(), "it-support");
        assert!(error.to_string().contains("it-support.wav"), "{error}");
    }

    #[test]
    fn probe_accepts_what_load_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ok.wav");
        std::fs::write(&good, g711_wav(7, 1, &[0xFF; 160], false)).unwrap();
        assert_eq!(probe_wav(&good), Ok(()));
        let bad = dir.path().join("bad.wav");
        std::fs::write(&bad, b"RIFF\x04\x00\x00\x00WAVE").unwrap();
        let message = probe_wav(&bad).unwrap_err();
        assert!(
            message.contains("bad.wav") && message.contains("no fmt chunk"),
            "{message}"
        );
    }
}
