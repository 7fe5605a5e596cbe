//! app (being built)
