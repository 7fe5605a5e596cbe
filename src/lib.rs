//! knappval: a SIP/RTP IVR and call-routing daemon.
//!
//! The path of a call, top to bottom (see `docs/ARCHITECTURE.md`):
//! `sip` answers it, `flow` runs the admin's `menu`, `media` plays prompts and hears digits,
//! `routing` hands it to a support function, `records` writes the contact record, `api` serves them.
//! This file wires nothing; `app` assembles the running daemon. `simulate` walks one call through the same
//! `flow` on simulated time, for `knappval simulate`.

pub mod agents;
pub mod announce;
pub mod api;
pub mod app;
pub mod call;
pub mod flow;
pub mod media;
pub mod menu;
pub mod records;
pub mod routing;
pub mod simulate;
pub mod sip;
