//! flow (being built)
