//! media (being built)
