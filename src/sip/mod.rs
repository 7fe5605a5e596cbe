//! sip (being built)
