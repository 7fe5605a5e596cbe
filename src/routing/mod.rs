//! Handing a caller to a support function. Two ways, as the admin chose per function:
//! [`bridge`] (knappval stays in the call as a B2BUA: it INVITEs the function and relays media) and
//! [`refer`] (knappval asks the caller's side to call the function itself, RFC 3515, and leaves).
//!
//! Either way the function learns what the caller chose, in headers on the INVITE (bridge) or carried in the
//! Refer-To URI's headers (refer): the function id, the digits as pressed and the menu path.
//! Knows nothing about menus' flow or records: the call task decides when to hand off and what it means.

pub mod bridge;
pub mod probe;
pub mod queue;
pub mod refer;

use rsipstack::sip::Header;

/// Header names the support functions' phones and queues can read.
pub const HEADER_FUNCTION: &str = "X-Knappval-Function";
pub const HEADER_DIGITS: &str = "X-Knappval-Digits";
pub const HEADER_PATH: &str = "X-Knappval-Path";
pub const HEADER_CALL_ID: &str = "X-Knappval-Call-ID";

/// What the function is told about the caller.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// The caller's number (From user or tel: number), put in the From of the bridged INVITE.
    pub caller_number: String,
    /// The Call-ID of the caller's leg, so the function's logs can be joined with the contact record.
    pub call_id: String,
    pub function_id: String,
    /// Digits as pressed, in order.
    pub digits: String,
    /// Menu ids visited, in order.
    pub path: Vec<String>,
    /// The caller's P-Asserted-Identity and Privacy headers, passed on in a bridged INVITE (not in a REFER: the
    /// transferee's own network asserts who calls).
    pub asserted_identity: Vec<Header>,
}

impl Handoff {
    /// The hand-off as header name and value pairs.
    pub fn fields(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_FUNCTION, self.function_id.clone()),
            (HEADER_DIGITS, self.digits.clone()),
            (HEADER_PATH, self.path.join(",")),
            (HEADER_CALL_ID, self.call_id.clone()),
        ]
    }

    pub fn headers(&self) -> Vec<Header> {
        self.fields()
            .into_iter()
            .map(|(name, value)| Header::Other(name.into(), value))
            .collect()
    }
}
