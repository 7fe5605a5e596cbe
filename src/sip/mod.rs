//! sip (being built by the lead).
pub mod sdp;
