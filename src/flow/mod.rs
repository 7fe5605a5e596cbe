//! The IVR engine (being built). Keep these two lines when filling in this module:
pub mod outcome;
pub use outcome::Outcome;
