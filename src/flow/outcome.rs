//! How a call ended, as the contact record and the statistics name it.

use std::fmt;
use std::str::FromStr;

/// The outcome of one call. Stored as its lower-case name (`transferred`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Handed to a support function (bridge answered, or REFER accepted and succeeded).
    Transferred,
    /// The caller hung up (or cancelled) before the hand-off.
    Abandoned,
    /// The caller made no valid choice before the retries ran out and the menu's fallback ended the call.
    Timeout,
    /// The hand-off failed with no fallback left, media failed, or the daemon stopped mid-call.
    Failed,
    /// The call was refused before it was answered (no common codec, shutting down, ...).
    Rejected,
    /// Answered while closed (the service's or the chosen function's opening hours), told so, and hung up.
    Closed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Transferred,
        Outcome::Abandoned,
        Outcome::Timeout,
        Outcome::Failed,
        Outcome::Rejected,
        Outcome::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Transferred => "transferred",
            Outcome::Abandoned => "abandoned",
            Outcome::Timeout => "timeout",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
            Outcome::Closed => "closed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown outcome '{0}' (expected transferred, abandoned, timeout, failed, rejected or closed)"
)]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>().unwrap(), outcome);
        }
        assert!("gave-up".parse::<Outcome>().is_err());
    }
}
