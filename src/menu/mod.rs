//! The admins' YAML menu: types, loading with file:line:col errors, validation.
//! Owns nothing at run time; produces a [`model::Menu`] the rest of the daemon reads.

pub mod model;
