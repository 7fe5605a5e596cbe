//! media (being built). Keep this line:
pub mod codec;
