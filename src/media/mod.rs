//! media (being built). Keep this line:
pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod player;
pub mod prompt;
pub mod rtp;
pub mod tone;
pub mod wav;
