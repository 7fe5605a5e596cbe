//! SDP offer/answer (being built).
