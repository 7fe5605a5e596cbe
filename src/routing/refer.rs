//! Refer: a blind transfer (RFC 3515). knappval sends REFER in the caller's dialog with the function as
//! Refer-To, the hand-off riding in that URI's headers; the caller's side (a PBX or trunk) calls the function,
//! copying those headers into its INVITE, and reports progress in NOTIFYs carrying `message/sipfrag` status
//! lines. A final 2xx means the function answered: knappval then ends its own dialog.

use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Request, StatusCodeKind};

use super::Handoff;

#[derive(Debug, thiserror::Error)]
pub enum ReferFailure {
    #[error("REFER refused ({0})")]
    Refused(String),
    #[error("REFER not answered: {0}")]
    NoResponse(String),
}

/// Sends the REFER. `Ok` means the caller's side accepted it (2xx, normally 202); the outcome follows in NOTIFYs.
pub async fn send(
    dialog: &InviteDialog,
    target: &str,
    handoff: &Handoff,
) -> Result<(), ReferFailure> {
    let refer_to = refer_to(target, handoff);
    // Also on the REFER itself, for a B2BUA that reads them there; a transferee only copies the URI's.
    let mut headers = handoff.headers();
    headers.push(Header::ReferredBy(
        format!("<{}>", dialog.initial_request().uri).into(),
    ));
    match dialog.refer(refer_to, Some(headers), None).await {
        Ok(Some(response)) if response.status_code.kind() == StatusCodeKind::Successful => Ok(()),
        Ok(Some(response)) => Err(ReferFailure::Refused(response.status_code.to_string())),
        Ok(None) => Err(ReferFailure::NoResponse("no final response".into())),
        Err(e) => Err(ReferFailure::NoResponse(e.to_string())),
    }
}

/// The Refer-To value: the target with the hand-off as URI headers (RFC 3261 §19.1.1), which the transferee
/// copies into the INVITE it sends to the function, so the function learns what the caller chose.
pub fn refer_to(target: &str, handoff: &Handoff) -> String {
    let query: Vec<String> = handoff
        .fields()
        .into_iter()
        .map(|(name, value)| format!("{name}={}", escape_uri_header(&value)))
        .collect();
    let separator = if target.contains('?') { '&' } else { '?' };
    format!("<{target}{separator}{}>", query.join("&"))
}

/// Escapes a URI header value as RFC 3261 §25.1 `hvalue` allows: unreserved characters and hnv-unreserved
/// ones (`[]/?:+$`) stay, everything else (`@`, `,`, `;`, `&`, `=`, `#`, `%`, space, `<>`, non-ASCII bytes)
/// is percent-encoded, so that neither the URI nor the Refer-To header around it ends early.
fn escape_uri_header(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')'
            | b'['
            | b']'
            | b'/'
            | b'?'
            | b':'
            | b'+'
            | b'$' => escaped.push(b as char),
            _ => escaped.push_str(&format!("%{b:02X}")),
        }
    }
    escaped
}

/// What one NOTIFY of the refer subscription says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferProgress {
    /// 1xx: the function is being called.
    Trying(u16),
    /// 2xx: the function answered; the transfer succeeded.
    Succeeded(u16),
    /// 3xx-6xx: the function could not be reached.
    Failed(u16),
}

/// Reads the sipfrag status line of a refer NOTIFY (`SIP/2.0 200 OK`). None when it is not one.
pub fn progress(notify: &Request) -> Option<ReferProgress> {
    let is_refer_event = notify.headers.iter().any(|h| match h {
        Header::Event(value) => value.value().to_ascii_lowercase().starts_with("refer"),
        Header::Other(name, value) => {
            (name.eq_ignore_ascii_case("event") || name.eq_ignore_ascii_case("o"))
                && value.to_ascii_lowercase().starts_with("refer")
        }
        _ => false,
    });
    if !is_refer_event {
        return None;
    }
    let body = std::str::from_utf8(&notify.body).ok()?;
    let status_line = body
        .lines()
        .find(|l| l.trim_start().starts_with("SIP/2.0"))?;
    let code: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    Some(match code {
        100..=199 => ReferProgress::Trying(code),
        200..=299 => ReferProgress::Succeeded(code),
        300..=699 => ReferProgress::Failed(code),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(event: &str, body: &str) -> Request {
        let text = format!(
            "NOTIFY sip:knappval@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKn1\r\n\
             From: <sip:caller@127.0.0.1>;tag=a\r\nTo: <sip:knappval@127.0.0.1>;tag=b\r\n\
             Call-ID: r1\r\nCSeq: 3 NOTIFY\r\n{event}Subscription-State: terminated;reason=noresource\r\n\
             Content-Type: message/sipfrag\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Request::try_from(text.as_str()).unwrap()
    }

    #[test]
    fn refer_to_carries_the_hand_off() {
        let handoff = Handoff {
            caller_number: "+4619123456".into(),
            call_id: "a b@c".into(),
            function_id: "kundtjanst".into(),
            digits: "1#".into(),
            path: vec!["root".into(), "more".into()],
            asserted_identity: vec![],
        };
        assert_eq!(
            refer_to("sip:kt@127.0.0.1:5071", &handoff),
            "<sip:kt@127.0.0.1:5071?X-Knappval-Function=kundtjanst&X-Knappval-Digits=1%23\
             &X-Knappval-Path=root%2Cmore&X-Knappval-Call-ID=a%20b%40c>"
        );
    }

    #[test]
    fn refer_to_keeps_hnv_unreserved_and_escapes_the_rest() {
        let handoff = Handoff {
            caller_number: "+46".into(),
            call_id: "x;y=z&w<v>%@[::1]:5060/+$?".into(),
            function_id: "it".into(),
            digits: "*0".into(),
            path: vec!["root".into()],
            asserted_identity: vec![],
        };
        let value = refer_to("sip:it@127.0.0.1;transport=tcp?Priority=urgent", &handoff);
        assert!(
            value.ends_with("&X-Knappval-Call-ID=x%3By%3Dz%26w%3Cv%3E%25%40[::1]:5060/+$?>"),
            "{value}"
        );
        assert!(value.starts_with(
            "<sip:it@127.0.0.1;transport=tcp?Priority=urgent&X-Knappval-Function=it&"
        ));
        assert!(value.contains("X-Knappval-Digits=*0&"), "{value}");
        assert_eq!(value.matches('<').count(), 1, "{value}");
    }

    #[test]
    fn sipfrag_progress() {
        assert_eq!(
            progress(&notify("Event: refer\r\n", "SIP/2.0 200 OK\r\n")),
            Some(ReferProgress::Succeeded(200))
        );
        assert_eq!(
            progress(&notify("Event: refer;id=3\r\n", "SIP/2.0 180 Ringing")),
            Some(ReferProgress::Trying(180))
        );
        assert_eq!(
            progress(&notify("o: refer\r\n", "SIP/2.0 486 Busy Here\r\n")),
            Some(ReferProgress::Failed(486))
        );
        assert_eq!(
            progress(&notify("Event: dialog\r\n", "SIP/2.0 200 OK")),
            None
        );
        assert_eq!(progress(&notify("Event: refer\r\n", "garbage")), None);
    }
}
