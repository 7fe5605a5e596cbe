//! media (being built). Keep this line:
pub mod codec;
pub mod g711;
pub mod tone;
pub mod wav;
