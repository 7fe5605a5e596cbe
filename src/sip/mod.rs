//! Our side of signalling: the rsipstack endpoint (UDP and TCP on one address), the door that answers malformed
//! datagrams ([`guard`]), the dispatcher that turns a new INVITE into an [`IncomingCall`] and routes in-dialog
//! requests to their dialog, SDP offer/answer ([`sdp`]), session timers ([`session_timer`]) and the few SIP bodies
//! we read ourselves ([`message`]).
//!
//! Knows nothing about menus, functions or records: the call task (`crate::call`) decides what a call does.

pub mod digest;
pub mod endpoint;
pub mod guard;
pub mod message;
pub mod registrar;
pub mod sdp;
pub mod session_timer;

pub use endpoint::{IncomingCall, SipEndpoint};
pub use registrar::{Registrar, RegistrationChange};

/// The methods knappval answers, for Allow headers (RFC 3261 §20.5).
pub const ALLOWED_METHODS: &str =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REFER, NOTIFY, UPDATE, PRACK";
