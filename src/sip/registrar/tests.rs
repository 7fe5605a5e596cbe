use std::collections::BTreeMap;

use rsipstack::sip::SipMessage;

use super::*;
use crate::agents::Agent;
use crate::sip::digest::{self, Algorithm};

const REALM: &str = "knappval";
const PASSWORD: &str = "hemligt";

fn agents(algorithms: &[Algorithm]) -> Agents {
    let mut map = BTreeMap::new();
    for id in ["it-anna", "it-bo"] {
        map.insert(
            id.to_owned(),
            Agent {
                name: (id == "it-anna").then(|| "Anna Berg".to_owned()),
                ha1_md5: Some(digest::ha1(Algorithm::Md5, id, REALM, PASSWORD)),
                ha1_sha256: Some(digest::ha1(Algorithm::Sha256, id, REALM, PASSWORD)),
            },
        );
    }
    Agents {
        realm: REALM.to_owned(),
        algorithms: algorithms.to_vec(),
        min_expires: Duration::from_secs(60),
        max_expires: Duration::from_secs(3600),
        nonce_lifetime: Duration::from_secs(300),
        agents: map,
    }
}

struct Phone {
    agent: &'static str,
    password: &'static str,
    call_id: String,
    cseq: u32,
    nc: u32,
}

impl Phone {
    fn new(agent: &'static str) -> Phone {
        Phone {
            agent,
            password: PASSWORD,
            call_id: format!("reg-{agent}"),
            cseq: 0,
            nc: 0,
        }
    }

    /// A REGISTER with `contact` and `expires` lines, and credentials for `challenge` if given.
    fn register(&mut self, extra: &[&str], challenge: Option<(&str, Algorithm)>) -> Request {
        self.cseq += 1;
        let mut text = format!(
            "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{}\r\n\
             From: <sip:{agent}@127.0.0.1:5060>;tag=ft\r\n\
             To: <sip:{agent}@127.0.0.1:5060>\r\n\
             Call-ID: {}\r\nCSeq: {} REGISTER\r\nMax-Forwards: 70\r\n",
            self.cseq,
            self.call_id,
            self.cseq,
            agent = self.agent
        );
        for line in extra {
            text.push_str(line);
            text.push_str("\r\n");
        }
        if let Some((nonce, algorithm)) = challenge {
            self.nc += 1;
            text.push_str(&authorization(
                self.agent,
                self.password,
                nonce,
                algorithm,
                self.nc,
            ));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match SipMessage::try_from(text.as_str()) {
            Ok(SipMessage::Request(request)) => request,
            other => panic!("test REGISTER does not parse: {other:?}"),
        }
    }
}

fn authorization(
    agent: &str,
    password: &str,
    nonce: &str,
    algorithm: Algorithm,
    nc: u32,
) -> String {
    let nc = format!("{nc:08x}");
    let uri = "sip:127.0.0.1:5060";
    let ha1 = digest::ha1(algorithm, agent, REALM, password);
    let response = digest::request_digest(
        algorithm,
        &ha1,
        nonce,
        Some((&nc, "c0ffee")),
        "REGISTER",
        uri,
    );
    format!(
        "Authorization: Digest username=\"{agent}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={algorithm}, qop=auth, nc={nc}, cnonce=\"c0ffee\"\r\n"
    )
}

/// The values of one kind of header in an answer, e.g. `|h| matches!(h, Header::Contact(_))`.
fn values(answer: &Answer, kind: fn(&Header) -> bool) -> Vec<String> {
    answer
        .headers
        .iter()
        .filter(|h| kind(h))
        .map(|h| {
            let line = h.to_string();
            line.split_once(": ")
                .map_or(line.clone(), |(_, v)| v.to_owned())
        })
        .collect()
}

fn challenges(answer: &Answer) -> Vec<String> {
    values(answer, |h| matches!(h, Header::WwwAuthenticate(_)))
}

fn nonce_of(answer: &Answer) -> String {
    let challenge = challenges(answer).into_iter().next().expect("a challenge");
    let start = challenge.find("nonce=\"").expect("nonce") + 7;
    challenge[start..start + 64].to_owned()
}

fn contact_lines(answer: &Answer) -> Vec<String> {
    values(answer, |h| matches!(h, Header::Contact(_)))
}

fn registrar(algorithms: &[Algorithm], epoch: Instant) -> Registrar {
    Registrar::with_secret(agents(algorithms), [9; 32], epoch)
}

/// Where the test phones' REGISTERs come from.
const PHONE_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

const CONTACT: &str = "Contact: <sip:it-anna@127.0.0.1:5070>";

#[test]
fn one_md5_challenge_by_default_and_one_per_algorithm_when_offered() {
    let now = Instant::now();
    let answer = registrar(&[Algorithm::Md5], now).register(
        &Phone::new("it-anna").register(&[CONTACT], None),
        PHONE_IP,
        now,
    );
    assert_eq!(answer.status, StatusCode::Unauthorized);
    assert_eq!(answer.outcome, Outcome::Challenged);
    let offered = challenges(&answer);
    assert_eq!(offered.len(), 1, "{offered:?}");
    assert!(
        offered[0].starts_with("Digest realm=\"knappval\", nonce=\""),
        "{offered:?}"
    );
    assert!(
        offered[0].ends_with("algorithm=MD5, qop=\"auth\""),
        "{offered:?}"
    );

    let both = registrar(&[Algorithm::Sha256, Algorithm::Md5], now);
    let offered = challenges(&both.register(
        &Phone::new("it-anna").register(&[CONTACT], None),
        PHONE_IP,
        now,
    ));
    assert_eq!(offered.len(), 2, "{offered:?}");
    assert!(
        offered[0].contains("algorithm=SHA-256"),
        "preferred first: {offered:?}"
    );
    assert!(offered[1].contains("algorithm=MD5"), "{offered:?}");
}

#[test]
fn the_right_password_registers_and_announces_the_agent() {
    let now = Instant::now();
    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let registrar = registrar(&[Algorithm::Sha256, Algorithm::Md5], now);
        let mut changes = registrar.subscribe();
        let mut phone = Phone::new("it-anna");
        let nonce = nonce_of(&registrar.register(&phone.register(&[CONTACT], None), PHONE_IP, now));
        let answer = registrar.register(
            &phone.register(&[CONTACT, "Expires: 600"], Some((&nonce, algorithm))),
            PHONE_IP,
            now,
        );
        assert_eq!(answer.status, StatusCode::OK, "{algorithm}: {answer:?}");
        assert_eq!(
            contact_lines(&answer),
            ["<sip:it-anna@127.0.0.1:5070>;expires=600"]
        );
        assert_eq!(
            registrar.contacts("it-anna", now + Duration::from_secs(599)),
            [Uri::try_from("sip:it-anna@127.0.0.1:5070").unwrap()]
        );
        assert!(
            registrar
                .contacts("it-anna", now + Duration::from_secs(600))
                .is_empty()
        );
        assert!(registrar.contacts("it-bo", now).is_empty());
        assert_eq!(
            changes.try_recv().unwrap(),
            RegistrationChange {
                agent: "it-anna".into(),
                registered: true
            }
        );
    }
}

#[test]
fn a_wrong_password_or_unknown_agent_gets_403_and_registers_nothing() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    let mut changes = registrar.subscribe();
    let mut phone = Phone::new("it-anna");
    phone.password = "fel";
    let nonce = nonce_of(&registrar.register(&phone.register(&[CONTACT], None), PHONE_IP, now));
    let answer = registrar.register(
        &phone.register(&[CONTACT], Some((&nonce, Algorithm::Md5))),
        PHONE_IP,
        now,
    );
    assert_eq!(answer.status, StatusCode::Forbidden);
    assert_eq!(
        answer.outcome,
        Outcome::WrongPassword {
            agent: "it-anna".into()
        }
    );
    assert!(registrar.contacts("it-anna", now).is_empty());

    let mut stranger = Phone::new("it-cecilia");
    let nonce = nonce_of(&registrar.register(&stranger.register(&[CONTACT], None), PHONE_IP, now));
    let answer = registrar.register(
        &stranger.register(&[CONTACT], Some((&nonce, Algorithm::Md5))),
        PHONE_IP,
        now,
    );
    assert_eq!(
        answer.status,
        StatusCode::Forbidden,
        "the same answer as a wrong password"
    );
    assert!(answer.headers.is_empty());
    assert!(changes.try_recv().is_err(), "nothing announced");
}

#[test]
fn credentials_of_one_agent_do_not_register_another() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    let mut bo = Phone::new("it-bo");
    let nonce = nonce_of(&registrar.register(&bo.register(&[CONTACT], None), PHONE_IP, now));
    // it-bo's valid credentials on a REGISTER for it-anna's address.
    let request = bo.register(&[CONTACT], Some((&nonce, Algorithm::Md5)));
    let text = request
        .to_string()
        .replace("To: <sip:it-bo@", "To: <sip:it-anna@");
    let Ok(SipMessage::Request(request)) = SipMessage::try_from(text.as_str()) else {
        panic!("reparse");
    };
    let answer = registrar.register(&request, PHONE_IP, now);
    assert_eq!(answer.status, StatusCode::Forbidden);
    assert!(registrar.contacts("it-anna", now).is_empty());
}

#[test]
fn a_replayed_nonce_count_is_refused_and_a_new_one_accepted() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    let mut phone = Phone::new("it-anna");
    let nonce = nonce_of(&registrar.register(&phone.register(&[CONTACT], None), PHONE_IP, now));
    let first = phone.register(&[CONTACT], Some((&nonce, Algorithm::Md5)));
    assert_eq!(
        registrar.register(&first, PHONE_IP, now).status,
        StatusCode::OK
    );
    let replay = registrar.register(&first, PHONE_IP, now + Duration::from_secs(1));
    assert_eq!(replay.status, StatusCode::Unauthorized);
    assert_eq!(
        replay.outcome,
        Outcome::Replayed {
            agent: "it-anna".into()
        }
    );
    assert!(!challenges(&replay)[0].contains("stale"));
    // The phone's next request counts on (nc=2 after the unauthenticated nc-less first one).
    let next = phone.register(&[CONTACT], Some((&nonce, Algorithm::Md5)));
    assert_eq!(
        registrar.register(&next, PHONE_IP, now).status,
        StatusCode::OK
    );
}

#[test]
fn an_old_nonce_is_stale_and_a_foreign_one_is_not_ours() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    let mut phone = Phone::new("it-anna");
    let nonce = nonce_of(&registrar.register(&phone.register(&[CONTACT], None), PHONE_IP, now));
    let later = now + Duration::from_secs(300);
    let answer = registrar.register(
        &phone.register(&[CONTACT], Some((&nonce, Algorithm::Md5))),
        PHONE_IP,
        later,
    );
    assert_eq!(answer.status, StatusCode::Unauthorized);
    assert_eq!(answer.outcome, Outcome::Stale);
    assert!(challenges(&answer)[0].ends_with(", stale=true"));
    assert_ne!(nonce_of(&answer), nonce, "a fresh nonce");

    let other = Registrar::with_secret(agents(&[Algorithm::Md5]), [1; 32], now);
    let answer = other.register(
        &phone.register(&[CONTACT], Some((&nonce, Algorithm::Md5))),
        PHONE_IP,
        now,
    );
    assert_eq!(answer.outcome, Outcome::ForeignNonce);
    assert!(!challenges(&answer)[0].contains("stale"));
}

#[test]
fn sha256_credentials_are_challenged_when_only_md5_is_offered() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    let mut phone = Phone::new("it-anna");
    let nonce = nonce_of(&registrar.register(&phone.register(&[CONTACT], None), PHONE_IP, now));
    let answer = registrar.register(
        &phone.register(&[CONTACT], Some((&nonce, Algorithm::Sha256))),
        PHONE_IP,
        now,
    );
    assert_eq!(answer.status, StatusCode::Unauthorized);
}

/// Registers `extra` for it-anna at `now` through a full challenge round; returns the final answer.
fn authenticated(registrar: &Registrar, phone: &mut Phone, extra: &[&str], now: Instant) -> Answer {
    authenticated_from(registrar, phone, extra, PHONE_IP, now)
}

/// [`authenticated`], from `source`.
fn authenticated_from(
    registrar: &Registrar,
    phone: &mut Phone,
    extra: &[&str],
    source: IpAddr,
    now: Instant,
) -> Answer {
    let nonce = nonce_of(&registrar.register(&phone.register(extra, None), source, now));
    registrar.register(
        &phone.register(extra, Some((&nonce, Algorithm::Md5))),
        source,
        now,
    )
}

#[test]
fn expiry_limits_several_contacts_and_removal() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    let mut changes = registrar.subscribe();
    let mut phone = Phone::new("it-anna");
    let brief = authenticated(&registrar, &mut phone, &[CONTACT, "Expires: 30"], now);
    assert_eq!(brief.status, StatusCode::IntervalTooBrief);
    assert!(matches!(&brief.headers[..], [Header::MinExpires(m)] if m.value() == "60"));

    let answer = authenticated(
        &registrar,
        &mut phone,
        &[
            "Contact: <sip:it-anna@127.0.0.1:5070>;expires=7200, <sip:it-anna@127.0.0.1:5072>",
            "Expires: 120",
        ],
        now,
    );
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        contact_lines(&answer),
        [
            "<sip:it-anna@127.0.0.1:5070>;expires=3600",
            "<sip:it-anna@127.0.0.1:5072>;expires=120"
        ],
        "capped at max_expires; the header's expiry where the contact has none"
    );
    // A third contact, from another phone (another Call-ID).
    let mut desk = Phone::new("it-anna");
    desk.call_id = "desk".into();
    let answer = authenticated(
        &registrar,
        &mut desk,
        &["Contact: <sip:it-anna@127.0.0.1:5074>", "Expires: 60"],
        now,
    );
    assert_eq!(contact_lines(&answer).len(), 3);
    assert!(changes.try_recv().unwrap().registered);
    assert!(
        changes.try_recv().is_err(),
        "only the first contact announces"
    );

    // Expires: 0 removes one binding.
    let answer = authenticated(
        &registrar,
        &mut phone,
        &["Contact: <sip:it-anna@127.0.0.1:5070>", "Expires: 0"],
        now,
    );
    assert_eq!(contact_lines(&answer).len(), 2);
    // The desk phone's binding expires first; the sweep keeps the other one.
    registrar.expire(now + Duration::from_secs(61));
    assert_eq!(
        registrar.contacts("it-anna", now + Duration::from_secs(61)),
        [Uri::try_from("sip:it-anna@127.0.0.1:5072").unwrap()]
    );
    assert!(changes.try_recv().is_err());
    // `*` removes everything and announces the agent gone.
    let answer = authenticated(&registrar, &mut phone, &["Contact: *", "Expires: 0"], now);
    assert_eq!(answer.status, StatusCode::OK);
    assert!(contact_lines(&answer).is_empty());
    assert_eq!(
        changes.try_recv().unwrap(),
        RegistrationChange {
            agent: "it-anna".into(),
            registered: false
        }
    );
    let misuse = authenticated(&registrar, &mut phone, &["Contact: *", "Expires: 60"], now);
    assert_eq!(misuse.status, StatusCode::BadRequest);
}

#[test]
fn the_sweep_announces_an_agent_whose_last_contact_expired() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    let mut changes = registrar.subscribe();
    let mut phone = Phone::new("it-anna");
    authenticated(&registrar, &mut phone, &[CONTACT, "Expires: 60"], now);
    assert!(changes.try_recv().unwrap().registered);
    registrar.expire(now + Duration::from_secs(59));
    assert!(changes.try_recv().is_err());
    registrar.expire(now + Duration::from_secs(60));
    assert_eq!(
        changes.try_recv().unwrap(),
        RegistrationChange {
            agent: "it-anna".into(),
            registered: false
        }
    );
    let view = registrar.agents(now);
    assert_eq!(view.len(), 2);
    assert_eq!(
        (view[0].id.as_str(), view[0].name.as_str()),
        ("it-anna", "Anna Berg")
    );
    assert_eq!(view[1].name, "it-bo", "no name: the id");
}

#[test]
fn an_older_request_of_the_same_call_id_is_refused() {
    let now = Instant::now();
    let mut bindings = Bindings::default();
    let uri = Uri::try_from("sip:a@127.0.0.1:5070").unwrap();
    let set = BindingUpdate::Contacts(vec![(uri.clone(), Duration::from_secs(60))]);
    bindings.apply("a", &set, "c1", 5, now).unwrap();
    assert!(bindings.apply("a", &set, "c1", 5, now).is_err());
    assert!(
        bindings
            .apply("a", &BindingUpdate::RemoveAll, "c1", 4, now)
            .is_err()
    );
    bindings.apply("a", &set, "other", 1, now).unwrap();
    assert_eq!(
        bindings.current("a", now).count(),
        1,
        "same contact, replaced"
    );
}

#[test]
fn an_agent_has_at_most_ten_contacts() {
    let now = Instant::now();
    let mut bindings = Bindings::default();
    let set = |port: u16, expires: u64| {
        BindingUpdate::Contacts(vec![(
            Uri::try_from(format!("sip:a@127.0.0.1:{port}").as_str()).unwrap(),
            Duration::from_secs(expires),
        )])
    };
    for port in 0..10 {
        bindings
            .apply("a", &set(5000 + port, 60), "c", 1 + u32::from(port), now)
            .unwrap();
    }
    assert_eq!(
        bindings.apply("a", &set(6000, 60), "c", 20, now),
        Err(BindingError::TooManyContacts)
    );
    // Refreshing one, or replacing one in the same request, is fine.
    bindings.apply("a", &set(5000, 60), "c", 21, now).unwrap();
    let swap = BindingUpdate::Contacts(vec![
        (
            Uri::try_from("sip:a@127.0.0.1:5001").unwrap(),
            Duration::ZERO,
        ),
        (
            Uri::try_from("sip:a@127.0.0.1:6000").unwrap(),
            Duration::from_secs(60),
        ),
    ]);
    bindings.apply("a", &swap, "c", 22, now).unwrap();
    assert_eq!(bindings.current("a", now).count(), 10);
}

#[test]
fn ten_wrong_passwords_lock_that_address_out_of_that_agent_only() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    let mut guesser = Phone::new("it-anna");
    guesser.password = "fel";
    for attempt in 1..=lockout::MAX_FAILURES {
        let answer = authenticated(&registrar, &mut guesser, &[CONTACT], now);
        assert_eq!(answer.status, StatusCode::Forbidden);
        let started = attempt == lockout::MAX_FAILURES;
        assert_eq!(
            matches!(answer.outcome, Outcome::LockedOut { started: true, .. }),
            started,
            "attempt {attempt}: {:?}",
            answer.outcome
        );
    }
    // The right password is now refused from that address, unchecked, as a wrong one would be.
    let mut anna = Phone::new("it-anna");
    let answer = authenticated(&registrar, &mut anna, &[CONTACT], now);
    assert_eq!(answer.status, StatusCode::Forbidden);
    assert!(matches!(
        answer.outcome,
        Outcome::LockedOut { started: false, .. }
    ));
    assert!(registrar.contacts("it-anna", now).is_empty());

    // Another agent from the same address, and the same agent from elsewhere, register.
    let answer = authenticated(&registrar, &mut Phone::new("it-bo"), &[CONTACT], now);
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let elsewhere: IpAddr = "192.0.2.7".parse().unwrap();
    let answer = authenticated_from(&registrar, &mut anna, &[CONTACT], elsewhere, now);
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    // Once the lockout is over (a fresh nonce: the old ones have expired), the address may try again.
    let later = now + lockout::LOCKOUT;
    registrar.expire(later);
    let answer = authenticated(&registrar, &mut anna, &[CONTACT], later);
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[test]
fn unknown_agent_ids_from_one_address_share_one_count() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    const STRANGERS: [&str; lockout::MAX_FAILURES as usize] = [
        "nobody-1",
        "nobody-2",
        "nobody-3",
        "nobody-4",
        "nobody-5",
        "nobody-6",
        "nobody-7",
        "nobody-8",
        "nobody-9",
        "nobody-10",
    ];
    for (n, name) in STRANGERS.into_iter().enumerate() {
        let answer = authenticated(&registrar, &mut Phone::new(name), &[CONTACT], now);
        assert_eq!(
            matches!(answer.outcome, Outcome::LockedOut { started: true, .. }),
            n + 1 == STRANGERS.len(),
            "{name}: {:?}",
            answer.outcome
        );
    }
    let mut anna = Phone::new("it-anna");
    let answer = authenticated(&registrar, &mut anna, &[CONTACT], now);
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "a real agent's id is counted apart"
    );
}

#[test]
fn a_replayed_right_request_does_not_forgive_the_wrong_guesses() {
    let now = Instant::now();
    let registrar = registrar(&[Algorithm::Md5], now);
    // A REGISTER of Anna's phone, captured on the wire after it was accepted.
    let mut anna = Phone::new("it-anna");
    let nonce = nonce_of(&registrar.register(&anna.register(&[CONTACT], None), PHONE_IP, now));
    let captured = anna.register(&[CONTACT], Some((&nonce, Algorithm::Md5)));
    assert_eq!(
        registrar.register(&captured, PHONE_IP, now).status,
        StatusCode::OK
    );
    let mut guesser = Phone::new("it-anna");
    guesser.password = "fel";
    for _ in 1..lockout::MAX_FAILURES {
        authenticated(&registrar, &mut guesser, &[CONTACT], now);
    }
    let replayed = registrar.register(&captured, PHONE_IP, now);
    assert!(matches!(replayed.outcome, Outcome::Replayed { .. }));
    let last = authenticated(&registrar, &mut guesser, &[CONTACT], now);
    assert!(
        matches!(last.outcome, Outcome::LockedOut { started: true, .. }),
        "{:?}",
        last.outcome
    );
}
