use super::*;

fn codec() -> TokenCodec {
    TokenCodec::new(KeyRing::generate(), "sticky")
}

fn token() -> Token {
    Token::new(BackendId::from_u64(0xdead_beef), 99, 1_800_000_000)
}

#[test]
fn round_trip() {
    let c = codec();
    let s = c.seal(&token());
    assert_eq!(s.as_str().len(), TOKEN_LEN);
    assert_eq!(c.open(s.as_str().as_bytes()), Ok(token()));
    // Fresh nonce each time: equal tokens seal to different text.
    assert_ne!(c.seal(&token()).as_str(), s.as_str());
}

#[test]
fn reveals_nothing_readable() {
    let c = codec();
    let s = c.seal(&token());
    let raw = URL_SAFE_NO_PAD.decode(s.as_str()).unwrap();
    let id = 0xdead_beef_u64.to_be_bytes();
    assert!(!raw.windows(8).any(|w| w == id));
}

#[test]
fn every_edit_is_caught() {
    let c = codec();
    let s = c.seal(&token());
    let text = s.as_str().as_bytes();
    for i in 0..text.len() {
        for repl in [b'A', b'_', b'z'] {
            if text[i] == repl {
                continue;
            }
            let mut t = text.to_vec();
            t[i] = repl;
            let r = c.open(&t);
            assert!(r.is_err(), "edit at {i} accepted");
        }
    }
}

#[test]
fn reasons() {
    let c = codec();
    let s = c.seal(&token());
    let text = s.as_str().as_bytes();
    assert_eq!(c.open(&text[..10]), Err(InvalidToken::Truncated));
    assert_eq!(c.open(b""), Err(InvalidToken::Truncated));
    let mut long = text.to_vec();
    long.push(b'A');
    assert_eq!(c.open(&long), Err(InvalidToken::Oversized));
    let mut bad = text.to_vec();
    bad[5] = b'%';
    assert_eq!(c.open(&bad), Err(InvalidToken::Malformed));
    let mut utf = text.to_vec();
    utf[5] = 0xff;
    assert_eq!(c.open(&utf), Err(InvalidToken::Malformed));
    // Another key: unknown key id (or forged if the ids happen to collide).
    let other = codec();
    let r = other.open(text);
    assert!(matches!(
        r,
        Err(InvalidToken::UnknownKey) | Err(InvalidToken::Forged)
    ));
    // Version byte edited.
    let mut raw = URL_SAFE_NO_PAD.decode(text).unwrap();
    raw[0] = 9;
    assert_eq!(
        c.open(URL_SAFE_NO_PAD.encode(&raw).as_bytes()),
        Err(InvalidToken::UnknownVersion)
    );
}

#[test]
fn cookie_name_is_bound() {
    let ring = KeyRing::generate();
    let a = TokenCodec::new(ring.clone(), "a");
    let b = TokenCodec::new(ring, "b");
    let s = a.seal(&token());
    assert_eq!(b.open(s.as_str().as_bytes()), Err(InvalidToken::Forged));
}

#[test]
fn rotation_old_key_opens_new_key_seals() {
    let old = Key::generate();
    let new = Key::generate();
    let before = TokenCodec::new(KeyRing::new(old.clone()), "sticky");
    let after = TokenCodec::new(KeyRing::new(new.clone()).with_opening_key(old), "sticky");
    let old_token = before.seal(&token());
    assert_eq!(after.open(old_token.as_str().as_bytes()), Ok(token()));
    let new_token = after.seal(&token());
    let raw = URL_SAFE_NO_PAD.decode(new_token.as_str()).unwrap();
    assert_eq!(raw[1], new.id());
    // A replica that only has the new key rejects the old token.
    let only_new = TokenCodec::new(KeyRing::new(new), "sticky");
    assert!(only_new.open(old_token.as_str().as_bytes()).is_err());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn fixed() -> (Key, Key, TokenCodec) {
        let current = Key::from_bytes([3; 32]);
        let old = Key::from_bytes([4; 32]);
        let ring = KeyRing::new(current.clone()).with_opening_key(old.clone());
        (current, old, TokenCodec::new(ring, "sticky"))
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 512,
            // No regression files written next to the sources.
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn any_token() -> impl Strategy<Value = Token> {
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(b, s, i, r)| Token {
            backend: BackendId::from_u64(b),
            session: s,
            issued: i,
            refreshed: r,
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_are_never_accepted(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (_, _, codec) = fixed();
            prop_assert!(codec.open(&bytes).is_err());
        }

        #[test]
        fn base64_text_of_token_length_is_never_accepted(
            text in proptest::string::string_regex(&format!("[A-Za-z0-9_-]{{{TOKEN_LEN}}}")).unwrap()
        ) {
            let (_, _, codec) = fixed();
            prop_assert_eq!(text.len(), TOKEN_LEN);
            prop_assert!(codec.open(text.as_bytes()).is_err());
        }

        #[test]
        fn single_character_edits_are_never_accepted(
            token in any_token(),
            pos in 0..TOKEN_LEN,
            replacement in any::<u8>(),
        ) {
            let (_, _, codec) = fixed();
            let sealed = codec.seal(&token);
            let mut text = sealed.as_str().as_bytes().to_vec();
            prop_assert_eq!(codec.open(&text), Ok(token));
            prop_assume!(text[pos] != replacement);
            text[pos] = replacement;
            prop_assert!(codec.open(&text).is_err());
        }

        #[test]
        fn only_configured_keys_open(token in any_token(), key in any::<[u8; 32]>()) {
            let (current, old, codec) = fixed();
            // Sealed by the current key or the old one: accepted.
            for k in [current, old] {
                let by = TokenCodec::new(KeyRing::new(k), "sticky");
                prop_assert_eq!(codec.open(by.seal(&token).as_str().as_bytes()), Ok(token));
            }
            // Sealed by any other key: refused, whatever its key id.
            prop_assume!(key != [3; 32] && key != [4; 32]);
            let stranger = TokenCodec::new(KeyRing::new(Key::from_bytes(key)), "sticky");
            let r = codec.open(stranger.seal(&token).as_str().as_bytes());
            prop_assert!(matches!(r, Err(InvalidToken::UnknownKey) | Err(InvalidToken::Forged)), "{:?}", r);
        }
    }
}
