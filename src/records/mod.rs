//! records (being built)
