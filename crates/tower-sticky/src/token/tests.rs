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
