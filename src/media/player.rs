//! What to send in the next 20 ms, and when: the prompt player and the frame pacer.
//!
//! Both are pure and take time as an argument. The player walks a shared, pre-encoded prompt
//! frame by frame; the pacer turns wall-clock time into "frames due" from absolute deadlines
//! (`start + n × 20 ms`), so timer lateness never accumulates into drift. Neither sends
//! anything: the session (or, later, one clock per worker for many streams) does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::{Codec, FRAME_SAMPLES};
use super::prompt::Prompt;

/// One packet's worth of audio.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
const FRAME_MICROS: u128 = 20_000;

/// Further behind than this (the process or the host stalled), the pacer stops catching up
/// with a burst, which would overrun the receiver's jitter buffer, and skips the lost time.
pub const MAX_BEHIND: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A frame of the current prompt in the player's codec; `first` on its first frame.
    Prompt {
        bytes: &'a [u8; FRAME_SAMPLES],
        first: bool,
    },
    /// Nothing to play: send the codec's silence so the stream (and NAT bindings) stay alive.
    Silence,
}

/// Plays one prompt at a time; replaced by `play`, silenced by `stop`.
#[derive(Debug)]
pub struct PromptPlayer {
    codec: Codec,
    current: Option<Arc<Prompt>>,
    position: usize,
    finished: bool,
    /// The current prompt starts over after its last frame, in the very next frame (hold music).
    looping: bool,
    /// The loop an announcement interrupted, and the frame it had reached: it goes on from there, in the frame
    /// after the announcement's last.
    paused_loop: Option<(Arc<Prompt>, usize)>,
}

impl PromptPlayer {
    pub fn new(codec: Codec) -> PromptPlayer {
        PromptPlayer {
            codec,
            current: None,
            position: 0,
            finished: false,
            looping: false,
            paused_loop: None,
        }
    }

    /// Follows a renegotiated codec mid-prompt: both laws are pre-encoded.
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Starts `prompt` from its beginning, replacing whatever played (which then does not
    /// report finishing: it was interrupted, not completed).
    pub fn play(&mut self, prompt: Arc<Prompt>) {
        self.current = Some(prompt);
        self.position = 0;
        self.finished = false;
        self.looping = false;
        self.paused_loop = None;
    }

    /// Plays `prompt` once over the loop playing now (an announcement over hold music): the loop pauses and goes
    /// on where it was as soon as `prompt` ends, which is reported as usual. Without a loop, like [`play`].
    ///
    /// [`play`]: PromptPlayer::play
    pub fn play_over_loop(&mut self, prompt: Arc<Prompt>) {
        let paused = match (&self.current, self.looping) {
            (Some(current), true) => Some((current.clone(), self.position)),
            _ => self.paused_loop.take(),
        };
        self.play(prompt);
        self.paused_loop = paused;
    }

    /// Plays `prompt` over and over until replaced or stopped: its first frame follows its last with no gap
    /// (the frame schedule is the pacer's, so the wrap costs no time either), and it never reports finishing.
    pub fn play_looped(&mut self, prompt: Arc<Prompt>) {
        self.play(prompt);
        self.looping = self.current.as_ref().is_some_and(|p| p.frame_count() > 0);
    }

    /// Stops the prompt without reporting it finished.
    pub fn stop(&mut self) {
        self.current = None;
        self.position = 0;
        self.finished = false;
        self.looping = false;
        self.paused_loop = None;
    }

    /// Whether the next frame is sound: a prompt with frames left, or a paused loop about to resume.
    pub fn is_playing(&self) -> bool {
        self.paused_loop.is_some()
            || self
                .current
                .as_ref()
                .is_some_and(|prompt| self.position < prompt.frame_count())
    }

    /// The next 20 ms to send. After a prompt's last frame, [`take_finished`] reports it once.
    ///
    /// [`take_finished`]: PromptPlayer::take_finished
    pub fn next_frame(&mut self) -> Frame<'_> {
        // The prompt whose last frame went out on the previous call is released here (an empty
        // one is finished before it began).
        let spent = self.current.as_ref().map(|prompt| prompt.frame_count());
        if let Some(frame_count) = spent.filter(|count| self.position >= *count) {
            if frame_count == 0 {
                self.finished = true;
            }
            self.current = None;
            if let Some((paused, position)) = self.paused_loop.take() {
                self.current = Some(paused);
                self.position = position;
                self.looping = true;
            }
        }
        let Some(prompt) = self.current.as_ref() else {
            return Frame::Silence;
        };
        let index = self.position;
        self.position += 1;
        if self.position == prompt.frame_count() {
            if self.looping {
                self.position = 0;
            } else {
                self.finished = true;
            }
        }
        Frame::Prompt {
            bytes: &prompt.frames(self.codec)[index],
            first: index == 0,
        }
    }

    /// True once after the last frame of a prompt has been handed out.
    pub fn take_finished(&mut self) -> bool {
        std::mem::take(&mut self.finished)
    }
}

/// What a [`Pacer::poll`] asks of the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Time to skip first (advance the RTP clock by `skipped × 160` without sending).
    pub skipped: u64,
    /// Frames to send now, in order.
    pub frames: usize,
}

/// 20 ms frame deadlines from one fixed start: deadline(n) = start + n × 20 ms.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    /// Frames accounted for (sent or skipped); frame `accounted` is the next one.
    accounted: u64,
}

impl Pacer {
    /// The first frame is due at `start`.
    pub fn new(start: Instant) -> Pacer {
        Pacer {
            start,
            accounted: 0,
        }
    }

    /// The deadline of frame `n`.
    pub fn deadline(&self, n: u64) -> Instant {
        self.start + Duration::from_micros(n.saturating_mul(FRAME_MICROS as u64))
    }

    /// When the next frame is due.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.accounted)
    }

    /// Frames accounted for so far (sent or skipped).
    pub fn accounted(&self) -> u64 {
        self.accounted
    }

    /// The frames due at `now`, which are then counted as handled. Within [`MAX_BEHIND`] of the
    /// schedule every due frame is sent (a small catch-up burst); further behind, only the
    /// latest frame is sent and the rest skipped.
    pub fn poll(&mut self, now: Instant) -> Due {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return Due::default();
        };
        let due_through = (elapsed.as_micros() / FRAME_MICROS) as u64;
        if due_through < self.accounted {
            return Due::default();
        }
        let due = due_through - self.accounted + 1;
        self.accounted = due_through + 1;
        let burst_limit = (MAX_BEHIND.as_micros() / FRAME_MICROS) as u64;
        if due > burst_limit {
            Due {
                skipped: due - 1,
                frames: 1,
            }
        } else {
            Due {
                skipped: 0,
                frames: due as usize,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(frames: usize) -> Arc<Prompt> {
        let samples = (0..frames * FRAME_SAMPLES)
            .map(|i| (i % 1000) as i16 * 10)
            .collect();
        Arc::new(Prompt::from_samples("test", samples))
    }

    #[test]
    fn a_looped_prompt_wraps_to_its_first_frame_without_silence_or_an_end() {
        let prompt = prompt(3);
        let mut player = PromptPlayer::new(Codec::Pcmu);
        player.play_looped(prompt.clone());
        let frames = prompt.frames(Codec::Pcmu);
        for round in 0..3 {
            for (index, expected) in frames.iter().enumerate() {
                match player.next_frame() {
                    Frame::Prompt { bytes, first } => {
                        assert_eq!(bytes, expected, "round {round} frame {index}");
                        assert_eq!(first, index == 0);
                    }
                    Frame::Silence => panic!("silence in round {round} at frame {index}"),
                }
                assert!(!player.take_finished());
            }
        }
        assert!(player.is_playing());
        // A prompt played once after the loop ends normally.
        player.play(prompt);
        for _ in 0..3 {
            player.next_frame();
        }
        assert!(player.take_finished());
        assert_eq!(player.next_frame(), Frame::Silence);
    }

    #[test]
    fn an_announcement_over_a_loop_is_followed_at_once_by_the_loop_where_it_paused() {
        let music = prompt(5);
        let announcement = Arc::new(Prompt::from_samples(
            "announcement",
            vec![9000; 2 * FRAME_SAMPLES],
        ));
        let mut player = PromptPlayer::new(Codec::Pcmu);
        player.play_looped(music.clone());
        for _ in 0..7 {
            player.next_frame();
        }
        // Two frames into the second round.
        player.play_over_loop(announcement.clone());
        let mut sent = Vec::new();
        for index in 0..6 {
            if index == 2 {
                assert!(player.is_playing(), "the loop is about to resume");
            }
            match player.next_frame() {
                Frame::Prompt { bytes, .. } => sent.push(*bytes),
                Frame::Silence => panic!("silence between the announcement and the music"),
            }
        }
        let music_frames = music.frames(Codec::Pcmu);
        let announced = announcement.frames(Codec::Pcmu);
        assert_eq!(sent[..2], announced[..]);
        assert_eq!(
            sent[2..],
            [
                music_frames[2],
                music_frames[3],
                music_frames[4],
                music_frames[0]
            ]
        );
        assert!(player.take_finished(), "the announcement's end is reported");
        assert!(!player.take_finished());
        assert!(player.is_playing());
    }

    #[test]
    fn plays_every_frame_in_order_then_silence_and_reports_the_end_once() {
        let prompt = prompt(3);
        let mut player = PromptPlayer::new(Codec::Pcma);
        assert_eq!(player.next_frame(), Frame::Silence);
        player.play(prompt.clone());
        for index in 0..3 {
            assert!(!player.take_finished());
            match player.next_frame() {
                Frame::Prompt { bytes, first } => {
                    assert_eq!(bytes, &prompt.frames(Codec::Pcma)[index]);
                    assert_eq!(first, index == 0);
                }
                Frame::Silence => panic!("silence at frame {index}"),
            }
        }
        assert!(player.take_finished());
        assert!(!player.take_finished());
        assert!(!player.is_playing());
        assert_eq!(player.next_frame(), Frame::Silence);
        assert!(!player.take_finished());
    }

    #[test]
    fn a_replaced_or_stopped_prompt_does_not_report_finishing() {
        let mut player = PromptPlayer::new(Codec::Pcmu);
        player.play(prompt(2));
        player.next_frame();
        player.play(prompt(1));
        assert!(matches!(
            player.next_frame(),
            Frame::Prompt { first: true, .. }
        ));
        assert!(player.take_finished(), "only the replacement finished");
        player.play(prompt(2));
        player.next_frame();
        player.stop();
        assert_eq!(player.next_frame(), Frame::Silence);
        assert!(!player.take_finished());
    }

    #[test]
    fn an_empty_prompt_finishes_at_once() {
        let mut player = PromptPlayer::new(Codec::Pcmu);
        player.play(Arc::new(Prompt::from_samples("empty", Vec::new())));
        assert_eq!(player.next_frame(), Frame::Silence);
        assert!(player.take_finished());
    }

    #[test]
    fn codec_can_change_mid_prompt() {
        let prompt = prompt(2);
        let mut player = PromptPlayer::new(Codec::Pcmu);
        player.play(prompt.clone());
        player.next_frame();
        player.set_codec(Codec::Pcma);
        assert_eq!(
            player.next_frame(),
            Frame::Prompt {
                bytes: &prompt.frames(Codec::Pcma)[1],
                first: false
            }
        );
    }

    /// A deterministic jitter source (xorshift), so a failure reproduces.
    struct Jitter(u64);
    impl Jitter {
        fn next_micros(&mut self, max: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % max
        }
    }

    #[test]
    fn ten_minutes_of_late_wakeups_do_not_drift() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        let mut jitter = Jitter(0x9E37_79B9_7F4A_7C15);
        let mut sent = 0u64;
        let mut sent_at = Vec::with_capacity(30_000);
        // Wake at each deadline plus 0-15 ms of scheduler lateness.
        while pacer.accounted() < 30_000 {
            let now = pacer.next_deadline() + Duration::from_micros(jitter.next_micros(15_000));
            let due = pacer.poll(now);
            assert_eq!(due.skipped, 0, "15 ms late is within the burst limit");
            for k in 0..due.frames as u64 {
                let n = sent + k;
                assert!(
                    pacer.deadline(n) <= now,
                    "frame {n} sent before its deadline"
                );
                sent_at.push(now);
            }
            sent += due.frames as u64;
        }
        // Ten minutes of frames, each sent less than one frame plus the jitter after its
        // deadline: lateness never accumulated.
        assert_eq!(sent, pacer.accounted());
        for (n, at) in sent_at.iter().enumerate() {
            let lateness = at.duration_since(pacer.deadline(n as u64));
            assert!(
                lateness < Duration::from_millis(35),
                "frame {n} late by {lateness:?}"
            );
        }
        let end = start + Duration::from_secs(600);
        let due = pacer.poll(end);
        assert_eq!(
            pacer.accounted(),
            30_001,
            "exactly 600 s / 20 ms frames, plus frame 0"
        );
        assert!(due.frames <= 1);
    }

    #[test]
    fn a_stall_is_skipped_not_burst() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        assert_eq!(
            pacer.poll(start),
            Due {
                skipped: 0,
                frames: 1
            }
        );
        assert_eq!(
            pacer.poll(start + Duration::from_millis(10)),
            Due::default()
        );
        // 60 ms late: three frames, sent as a small burst.
        assert_eq!(
            pacer.poll(start + Duration::from_millis(80)),
            Due {
                skipped: 0,
                frames: 4
            }
        );
        // A 1 s stall: the lost time is skipped, only the current frame is sent.
        let after_stall = start + Duration::from_millis(1080);
        let due = pacer.poll(after_stall);
        assert_eq!(
            due,
            Due {
                skipped: 49,
                frames: 1
            }
        );
        assert_eq!(pacer.accounted(), 55);
        assert!(pacer.next_deadline() > after_stall);
        // And the schedule carries on from the original start.
        assert_eq!(pacer.next_deadline(), start + Duration::from_millis(1100));
    }

    #[test]
    fn polling_before_the_start_sends_nothing() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut pacer = Pacer::new(start);
        assert_eq!(pacer.poll(start - Duration::from_millis(1)), Due::default());
        assert_eq!(pacer.poll(start).frames, 1);
    }
}
