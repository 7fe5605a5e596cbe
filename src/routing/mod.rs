//! routing (being built)
