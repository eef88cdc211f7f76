//! Cookie header parsing (`tower_sticky::cookie::{find_cookie, strip_cookie}`)
//! against a plain reference model of RFC 6265 §5.4 `Cookie` lists.
//!
//! Input: segments separated by `\n` (a byte no header value holds). The
//! first names the cookie to find and strip (used when it is a non-empty
//! token, else `sticky`); each other segment that is a valid header value is
//! one `Cookie` header (HTTP/2 sends one per cookie, HTTP/1.1 one in all).
//!
//! Checked: `find_cookie` returns the first `name=value` pair of that name
//! (trimmed), as the model does; after `strip_cookie`, no pair of that name
//! is left, and every other cookie is kept, in order and byte for byte.
#![no_main]

use http::header::{HeaderMap, HeaderValue, COOKIE};
use libfuzzer_sys::fuzz_target;
use tower_sticky::cookie::{find_cookie, strip_cookie};

fn trim(s: &[u8]) -> &[u8] {
    let s = match s.iter().position(|&b| b != b' ' && b != b'\t') {
        Some(i) => &s[i..],
        None => return &[],
    };
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').unwrap() + 1;
    &s[..end]
}

/// Every non-blank `;`-separated piece of every Cookie header, trimmed.
fn pieces(h: &HeaderMap) -> Vec<Vec<u8>> {
    h.get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(trim)
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// A piece's name: before its first `=` (all of it without one), trimmed.
fn name_of(p: &[u8]) -> &[u8] {
    trim(&p[..p.iter().position(|&b| b == b'=').unwrap_or(p.len())])
}

/// The model's `find_cookie`: the first piece `name=...` with an `=`.
fn model_find(pieces: &[Vec<u8>], name: &[u8]) -> Option<Vec<u8>> {
    pieces.iter().find_map(|p| {
        let eq = p.iter().position(|&b| b == b'=')?;
        (trim(&p[..eq]) == name).then(|| trim(&p[eq + 1..]).to_vec())
    })
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let mut segs = data.split(|&b| b == b'\n');
    let first = segs.next().unwrap_or_default();
    let name = if is_token(first) {
        std::str::from_utf8(first).unwrap()
    } else {
        "sticky"
    };
    let mut headers = HeaderMap::new();
    for s in segs {
        if let Ok(v) = HeaderValue::from_bytes(s) {
            headers.append(COOKIE, v);
        }
    }
    // Unrelated headers must come through untouched.
    headers.append("x-other", HeaderValue::from_static("1"));
    let before = pieces(&headers);

    let found = find_cookie(&headers, name).map(<[u8]>::to_vec);
    assert_eq!(found, model_find(&before, name.as_bytes()), "find_cookie");
    let others: Vec<&[u8]> = before.iter().map(|p| name_of(p)).collect();

    strip_cookie(&mut headers, name);
    let after = pieces(&headers);
    let expected: Vec<Vec<u8>> = before
        .iter()
        .filter(|p| name_of(p) != name.as_bytes())
        .cloned()
        .collect();
    assert_eq!(after, expected, "strip_cookie kept exactly the others");
    assert_eq!(find_cookie(&headers, name), None, "ours is gone");
    for other in others {
        if let (true, Ok(other)) = (other != name.as_bytes(), std::str::from_utf8(other)) {
            assert_eq!(
                find_cookie(&headers, other).map(<[u8]>::to_vec),
                model_find(&before, other.as_bytes()),
                "cookie {other:?} kept"
            );
        }
    }
    assert_eq!(headers.get("x-other").unwrap(), "1");
});
