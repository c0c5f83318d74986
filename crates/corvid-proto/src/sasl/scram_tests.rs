//! SCRAM client and server against the RFC test vectors and against each other.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;

use super::*;

const SCRAM: [Mechanism; 4] = [
    Mechanism::ScramSha256Plus,
    Mechanism::ScramSha1Plus,
    Mechanism::ScramSha256,
    Mechanism::ScramSha1,
];

/// One RFC example exchange: the four messages and the inputs that produce them.
struct Vector {
    mechanism: Mechanism,
    client_nonce: &'static str,
    server_nonce: &'static str,
    salt: &'static str,
    messages: [&'static str; 4],
}

/// Checks both sides independently: each produces the RFC's message from the RFC's
/// previous message.
fn check_vector(v: &Vector) {
    let salt = BASE64.decode(v.salt).unwrap();
    let creds = Credentials::derive("pencil", &salt, 4096);
    let [client_first, server_first, client_final, server_final] = v.messages.map(str::as_bytes);

    let mut client =
        ScramClient::new(v.mechanism, "user", "pencil", None).with_nonce(v.client_nonce);
    assert_eq!(client.client_first(), client_first);
    assert_eq!(
        client.handle_server_first(server_first).unwrap(),
        client_final
    );
    assert_eq!(client.verify_server_final(server_final), Ok(()));

    let mut server = ScramServer::with_server_nonce(v.mechanism, v.server_nonce);
    let who = server.client_first(client_first).unwrap();
    assert_eq!(
        who,
        ClientFirst {
            username: "user".into(),
            authzid: None
        }
    );
    assert_eq!(server.server_first(Some(&creds)), server_first);
    assert_eq!(server.client_final(client_final).unwrap(), server_final);
}

#[test]
fn rfc5802_scram_sha1_vector() {
    check_vector(&Vector {
        mechanism: Mechanism::ScramSha1,
        client_nonce: "fyko+d2lbbFgONRv9qkxdawL",
        server_nonce: "3rfcNHYJY1ZVvWVs7j",
        salt: "QSXCR+Q6sek8bf92",
        messages: [
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ],
    });
}

#[test]
fn rfc7677_scram_sha256_vector() {
    check_vector(&Vector {
        mechanism: Mechanism::ScramSha256,
        client_nonce: "rOprNGfwEbeRWgbNEkqO",
        server_nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
        messages: [
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ],
    });
}

fn creds() -> Credentials {
    Credentials::derive("pencil", b"NaCl-for-tests", 64)
}

fn tls() -> ChannelBindings {
    ChannelBindings {
        tls_exporter: Some(vec![0xe5; 32]),
        tls_server_end_point: Some(b"certificate hash".to_vec()),
    }
}

fn binding(cb_name: &str, bindings: &ChannelBindings) -> Option<(String, Vec<u8>)> {
    Some((cb_name.to_owned(), bindings.data(cb_name).unwrap().to_vec()))
}

/// Runs a whole exchange, as a server offering -PLUS exactly when it has bindings.
fn exchange(
    server: &mut ScramServer,
    client: &mut ScramClient,
    creds: Option<&Credentials>,
) -> Result<(), SaslError> {
    server.client_first(&client.client_first())?;
    let server_first = server.server_first(creds);
    let client_final = client.handle_server_first(&server_first)?;
    let server_final = server.client_final(&client_final)?;
    client.verify_server_final(&server_final)
}

/// A server that has answered client-first, and the client-final a correct client
/// would send, for tests that tamper with it.
fn up_to_client_final(mechanism: Mechanism, client: &mut ScramClient) -> (ScramServer, String) {
    let mut server = ScramServer::new(mechanism, tls(), true);
    server.client_first(&client.client_first()).unwrap();
    let server_first = server.server_first(Some(&creds()));
    let client_final = client.handle_server_first(&server_first).unwrap();
    (server, String::from_utf8(client_final).unwrap())
}

#[test]
fn every_mechanism_without_channel_binding() {
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha1] {
        let mut server = ScramServer::new(mechanism, ChannelBindings::default(), false);
        let mut client = ScramClient::new(mechanism, "user", "pencil", None);
        assert_eq!(
            exchange(&mut server, &mut client, Some(&creds())),
            Ok(()),
            "{mechanism:?}"
        );
    }
}

#[test]
fn every_plus_mechanism_with_each_binding_type() {
    for mechanism in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
        for cb_name in [
            ChannelBindings::TLS_EXPORTER,
            ChannelBindings::TLS_SERVER_END_POINT,
        ] {
            let mut server = ScramServer::new(mechanism, tls(), true);
            let mut client =
                ScramClient::new(mechanism, "user", "pencil", binding(cb_name, &tls()));
            assert_eq!(
                exchange(&mut server, &mut client, Some(&creds())),
                Ok(()),
                "{cb_name}"
            );
        }
    }
}

#[test]
fn plain_scram_with_y_flag_succeeds_when_plus_was_not_offered() {
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha1] {
        let mut server = ScramServer::new(mechanism, tls(), false);
        let mut client = ScramClient::new(
            mechanism,
            "user",
            "pencil",
            binding(ChannelBindings::TLS_EXPORTER, &tls()),
        );
        assert!(client.client_first().starts_with(b"y,,"));
        assert_eq!(exchange(&mut server, &mut client, Some(&creds())), Ok(()));
    }
}

#[test]
fn y_flag_when_plus_was_offered_is_a_downgrade() {
    let mut server = ScramServer::new(Mechanism::ScramSha256, tls(), true);
    let mut client = ScramClient::new(
        Mechanism::ScramSha256,
        "user",
        "pencil",
        binding(ChannelBindings::TLS_EXPORTER, &tls()),
    );
    assert_eq!(
        server.client_first(&client.client_first()),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn special_characters_in_username_are_escaped_and_unescaped() {
    let mut server = ScramServer::new(Mechanism::ScramSha256, ChannelBindings::default(), false);
    let mut client = ScramClient::new(Mechanism::ScramSha256, "a,b=c", "pencil", None);
    let who = server.client_first(&client.client_first()).unwrap();
    assert_eq!(who.username, "a,b=c");
    let server_first = server.server_first(Some(&creds()));
    let client_final = client.handle_server_first(&server_first).unwrap();
    assert!(server.client_final(&client_final).is_ok());
}

#[test]
fn authzid_is_reported() {
    let mut server = ScramServer::new(Mechanism::ScramSha1, ChannelBindings::default(), false);
    let who = server
        .client_first(b"n,a=admin@example.org,n=user,r=abc")
        .unwrap();
    assert_eq!(
        who,
        ClientFirst {
            username: "user".into(),
            authzid: Some("admin@example.org".into())
        }
    );
}

#[test]
fn wrong_password_is_not_authorized() {
    for mechanism in SCRAM {
        let mut server = ScramServer::new(mechanism, tls(), true);
        let mut client = ScramClient::new(
            mechanism,
            "user",
            "pencil2",
            binding("tls-exporter", &tls()),
        );
        assert_eq!(
            exchange(&mut server, &mut client, Some(&creds())),
            Err(SaslError::NotAuthorized)
        );
    }
}

#[test]
fn unknown_user_fails_only_at_the_final_step() {
    let mut server = ScramServer::new(Mechanism::ScramSha256, ChannelBindings::default(), false);
    let mut client = ScramClient::new(Mechanism::ScramSha256, "ghost", "pencil", None);
    assert!(server.client_first(&client.client_first()).is_ok());
    let server_first = server.server_first(None);
    let client_final = client.handle_server_first(&server_first).unwrap();
    assert_eq!(
        server.client_final(&client_final),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn unknown_user_gets_the_same_salt_every_time() {
    let salt_for = |username: &str| {
        let mut server = ScramServer::new(Mechanism::ScramSha1, ChannelBindings::default(), false);
        server
            .client_first(format!("n,,n={username},r=abc").as_bytes())
            .unwrap();
        let server_first = String::from_utf8(server.server_first(None)).unwrap();
        server_first.split(',').nth(1).unwrap().to_owned()
    };
    assert_eq!(salt_for("ghost"), salt_for("ghost"));
    assert_ne!(salt_for("ghost"), salt_for("phantom"));
}

#[test]
fn tampered_proof_is_not_authorized() {
    let mut client = ScramClient::new(Mechanism::ScramSha256, "user", "pencil", None);
    let (mut server, client_final) = up_to_client_final(Mechanism::ScramSha256, &mut client);
    let (rest, proof) = client_final.rsplit_once(",p=").unwrap();
    let mut proof = BASE64.decode(proof).unwrap();
    proof[0] ^= 1;
    let tampered = format!("{rest},p={}", BASE64.encode(proof));
    assert_eq!(
        server.client_final(tampered.as_bytes()),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn wrong_channel_binding_data_is_not_authorized() {
    let mut client = ScramClient::new(
        Mechanism::ScramSha256Plus,
        "user",
        "pencil",
        Some(("tls-exporter".into(), vec![0x00; 32])),
    );
    let (mut server, client_final) = up_to_client_final(Mechanism::ScramSha256Plus, &mut client);
    assert_eq!(
        server.client_final(client_final.as_bytes()),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn cbind_input_must_repeat_the_gs2_header() {
    // A client that said "y" in client-first but claims "n" in client-final.
    let mut client = ScramClient::new(
        Mechanism::ScramSha1,
        "user",
        "pencil",
        binding("tls-exporter", &tls()),
    );
    let mut server = ScramServer::new(Mechanism::ScramSha1, tls(), false);
    server.client_first(&client.client_first()).unwrap();
    let server_first = server.server_first(Some(&creds()));
    let client_final =
        String::from_utf8(client.handle_server_first(&server_first).unwrap()).unwrap();
    assert!(client_final.starts_with("c=eSws,"));
    let tampered = client_final.replacen("c=eSws,", "c=biws,", 1);
    assert_eq!(
        server.client_final(tampered.as_bytes()),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn wrong_nonce_is_not_authorized() {
    let mut client = ScramClient::new(Mechanism::ScramSha1, "user", "pencil", None);
    let (mut server, client_final) = up_to_client_final(Mechanism::ScramSha1, &mut client);
    let tampered = client_final.replacen(",r=", ",r=x", 1);
    assert_eq!(
        server.client_final(tampered.as_bytes()),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn channel_binding_flag_must_match_the_mechanism() {
    let cases: [(Mechanism, &[u8], SaslError); 5] = [
        (
            Mechanism::ScramSha256Plus,
            b"n,,n=user,r=abc",
            SaslError::MalformedRequest,
        ),
        (
            Mechanism::ScramSha256Plus,
            b"y,,n=user,r=abc",
            SaslError::MalformedRequest,
        ),
        (
            Mechanism::ScramSha256,
            b"p=tls-exporter,,n=user,r=abc",
            SaslError::MalformedRequest,
        ),
        (
            Mechanism::ScramSha1Plus,
            b"p=tls-unique,,n=user,r=abc",
            SaslError::NotAuthorized,
        ),
        (
            Mechanism::ScramSha1Plus,
            b"p=tls-exporter;,,n=user,r=abc",
            SaslError::MalformedRequest,
        ),
    ];
    for (mechanism, msg, error) in cases {
        let mut server = ScramServer::new(mechanism, tls(), true);
        assert_eq!(
            server.client_first(msg),
            Err(error),
            "{}",
            String::from_utf8_lossy(msg)
        );
    }
}

#[test]
fn plus_on_a_connection_without_bindings_is_not_authorized() {
    let mut server = ScramServer::new(
        Mechanism::ScramSha256Plus,
        ChannelBindings::default(),
        false,
    );
    assert_eq!(
        server.client_first(b"p=tls-exporter,,n=user,r=abc"),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn extensions_m_and_encoding_errors() {
    let mut server = ScramServer::new(Mechanism::ScramSha1, ChannelBindings::default(), false);
    assert_eq!(
        server.client_first(b"n,,m=x,n=user,r=abc"),
        Err(SaslError::MalformedRequest)
    );

    let mut client = ScramClient::new(Mechanism::ScramSha1, "user", "pencil", None);
    let (mut server, client_final) = up_to_client_final(Mechanism::ScramSha1, &mut client);
    let with_m = client_final.replacen(",p=", ",m=x,p=", 1);
    assert_eq!(
        server.client_final(with_m.as_bytes()),
        Err(SaslError::MalformedRequest)
    );

    let mut client = ScramClient::new(Mechanism::ScramSha1, "user", "pencil", None);
    let (mut server, client_final) = up_to_client_final(Mechanism::ScramSha1, &mut client);
    let bad_base64 = client_final.replacen(",p=", ",p=*", 1);
    assert_eq!(
        server.client_final(bad_base64.as_bytes()),
        Err(SaslError::IncorrectEncoding)
    );
}

#[test]
fn short_proof_is_malformed() {
    let mut client = ScramClient::new(Mechanism::ScramSha256, "user", "pencil", None);
    let (mut server, client_final) = up_to_client_final(Mechanism::ScramSha256, &mut client);
    let (rest, _) = client_final.rsplit_once(",p=").unwrap();
    let short = format!("{rest},p={}", BASE64.encode([0; 20]));
    assert_eq!(
        server.client_final(short.as_bytes()),
        Err(SaslError::MalformedRequest)
    );
}

#[test]
fn steps_out_of_order_fail() {
    let mut server = ScramServer::new(Mechanism::ScramSha1, ChannelBindings::default(), false);
    assert_eq!(
        server.client_final(b"c=biws,r=abc,p=AAAA"),
        Err(SaslError::MalformedRequest)
    );
    // That error ended the exchange.
    assert_eq!(
        server.client_first(b"n,,n=user,r=abc"),
        Err(SaslError::MalformedRequest)
    );

    let mut server = ScramServer::new(Mechanism::ScramSha1, ChannelBindings::default(), false);
    assert!(server.server_first(Some(&creds())).is_empty());

    let mut server = ScramServer::new(Mechanism::ScramSha1, ChannelBindings::default(), false);
    server.client_first(b"n,,n=user,r=abc").unwrap();
    assert_eq!(
        server.client_first(b"n,,n=user,r=abc"),
        Err(SaslError::MalformedRequest)
    );
}

#[test]
fn a_failed_final_step_cannot_be_retried() {
    let mut client = ScramClient::new(Mechanism::ScramSha1, "user", "pencil", None);
    let (mut server, client_final) = up_to_client_final(Mechanism::ScramSha1, &mut client);
    let tampered = client_final.replacen(",r=", ",r=x", 1);
    assert!(server.client_final(tampered.as_bytes()).is_err());
    assert_eq!(
        server.client_final(client_final.as_bytes()),
        Err(SaslError::MalformedRequest)
    );
}

#[test]
fn plain_is_not_a_scram_mechanism() {
    let mut server = ScramServer::new(Mechanism::Plain, ChannelBindings::default(), false);
    assert_eq!(
        server.client_first(b"n,,n=user,r=abc"),
        Err(SaslError::InvalidMechanism)
    );
    let mut client = ScramClient::new(Mechanism::Plain, "user", "pencil", None);
    client.client_first();
    assert_eq!(
        client.handle_server_first(b"r=abcd,s=c2FsdA==,i=1"),
        Err(SaslError::InvalidMechanism)
    );
}

#[test]
fn client_requires_a_binding_for_plus() {
    let mut client = ScramClient::new(Mechanism::ScramSha256Plus, "user", "pencil", None);
    client.client_first();
    assert_eq!(
        client.handle_server_first(b"r=abcd,s=c2FsdA==,i=1"),
        Err(SaslError::InvalidMechanism)
    );
}

#[test]
fn client_rejects_a_server_that_does_not_extend_its_nonce() {
    let mut client =
        ScramClient::new(Mechanism::ScramSha1, "user", "pencil", None).with_nonce("abc");
    client.client_first();
    for server_first in [
        "r=abc,s=c2FsdA==,i=1",
        "r=xbcdef,s=c2FsdA==,i=1",
        "r=ab,s=c2FsdA==,i=1",
    ] {
        assert_eq!(
            client.handle_server_first(server_first.as_bytes()),
            Err(SaslError::NotAuthorized),
            "{server_first}"
        );
    }
}

#[test]
fn client_rejects_a_wrong_server_signature() {
    let mut client = ScramClient::new(Mechanism::ScramSha256, "user", "pencil", None);
    assert_eq!(
        client.verify_server_final(b"v=AAAA"),
        Err(SaslError::NotAuthorized)
    );
    let (mut server, client_final) = up_to_client_final(Mechanism::ScramSha256, &mut client);
    let server_final = server.client_final(client_final.as_bytes()).unwrap();
    assert_eq!(client.verify_server_final(&server_final), Ok(()));

    let mut forged = BASE64.decode(&server_final[2..]).unwrap();
    forged[5] ^= 0x80;
    let forged = format!("v={}", BASE64.encode(forged));
    assert_eq!(
        client.verify_server_final(forged.as_bytes()),
        Err(SaslError::NotAuthorized)
    );
    assert_eq!(
        client.verify_server_final(b"e=invalid-proof"),
        Err(SaslError::NotAuthorized)
    );
}

#[test]
fn debug_output_has_no_secrets() {
    let client = ScramClient::new(Mechanism::ScramSha1, "user", "secret-pw", None);
    assert!(!format!("{client:?}").contains("secret-pw"));
}

/// Strings made of SCRAM's syntax characters, to get past UTF-8 and into the parser.
fn scramish() -> impl Strategy<Value = String> {
    "[cnrpmysvie=,a-f0-9A-F+/ ]{0,80}"
}

proptest! {
    #[test]
    fn client_first_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..200), text in scramish()) {
        for mechanism in Mechanism::ALL {
            let _ = ScramServer::new(mechanism, tls(), true).client_first(&msg);
            let _ = ScramServer::new(mechanism, tls(), true).client_first(text.as_bytes());
        }
    }

    #[test]
    fn client_final_never_panics_nor_succeeds(
        msg in proptest::collection::vec(any::<u8>(), 0..200),
        text in scramish(),
    ) {
        let creds = creds();
        for garbage in [msg.as_slice(), text.as_bytes()] {
            let mut server = ScramServer::new(Mechanism::ScramSha1, ChannelBindings::default(), false);
            server.client_first(b"n,,n=user,r=abc").unwrap();
            server.server_first(Some(&creds));
            prop_assert!(server.client_final(garbage).is_err());
        }
    }

    #[test]
    fn client_never_panics_on_server_messages(
        msg in proptest::collection::vec(any::<u8>(), 0..200),
        text in scramish(),
    ) {
        for garbage in [msg.as_slice(), text.as_bytes()] {
            let mut client = ScramClient::new(Mechanism::ScramSha256, "user", "pencil", None);
            client.client_first();
            let _ = client.handle_server_first(garbage);
            prop_assert!(client.verify_server_final(garbage).is_err());
        }
    }

    #[test]
    fn parse_plain_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_plain(&msg);
    }
}
