//! media (being built). Keep this line:
pub mod codec;
pub mod g711;
