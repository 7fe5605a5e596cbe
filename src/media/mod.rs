//! Media: everything between a call's RTP socket and the flow's "play this" / "caller pressed 5".
//!
//! Owns G.711 (`g711`, `codec`), prompts converted once at load (`wav`, `prompt`), RTP packets
//! and our stream's clock (`rtp`), paced prompt playback (`player`), key presses from RFC 4733
//! telephone-events and in-band tones (`dtmf`, `tone`), RTP port allocation (`ports`), the
//! per-leg async media session (`session`) and the bridge between two legs (`relay`).
//! The pure parts take `now` and bytes; only `session`, `relay` and `ports` touch sockets.
//! Media knows nothing of SIP, SDP or menus: it is told addresses, codecs and prompts.
pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod player;
pub mod ports;
pub mod prompt;
pub mod relay;
pub mod rtp;
pub mod session;
pub mod tone;
pub mod wav;

pub use codec::{CLOCK_RATE, Codec, FRAME_SAMPLES};
pub use dtmf::{DtmfReceiver, InbandDtmfDetector, TelephoneEvent};
pub use player::{Frame, Pacer, PromptPlayer};
pub use ports::{DEFAULT_RTP_PORTS, RtpPorts};
pub use prompt::{Prompt, PromptCache, PromptError, probe_wav};
pub use relay::{RelayEnd, relay};
pub use rtp::RtpStream;
pub use session::{DEFAULT_MEDIA_TIMEOUT, MediaEvent, MediaSession, MediaStats};
pub use wav::WavError;
