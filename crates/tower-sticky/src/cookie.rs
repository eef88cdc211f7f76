//! The cookie codec: finding our token in `Cookie` headers, removing it
//! before the backend sees the request, and writing `Set-Cookie`.
//!
//! Works on `http::HeaderMap` alone, so every adapter shares it.

use std::time::Duration;

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::lifecycle::{HeaderEdit, HeaderEdits};

/// `SameSite` attribute of the affinity cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level navigations (browser default).
    Lax,
    /// Sent on all requests; forces `Secure`, as browsers require.
    None,
}

/// How long the browser keeps the cookie (GEP-1619 `cookieConfig.lifetimeType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieLifetime {
    /// Until the browser session ends (no `Max-Age`). The default.
    Session,
    /// For this long (`Max-Age`).
    Permanent(Duration),
}

/// The affinity cookie's name and attributes.
///
/// ```
/// use tower_sticky::{CookieConfig, SameSite};
/// let cookie = CookieConfig::new("sticky").path("/").secure(true).same_site(SameSite::Lax);
/// assert_eq!(cookie.name(), "sticky");
/// ```
#[derive(Clone, Debug)]
pub struct CookieConfig {
    pub(crate) name: String,
    path: Option<String>,
    domain: Option<String>,
    secure: bool,
    secure_over_tls: bool,
    http_only: bool,
    same_site: Option<SameSite>,
    lifetime: CookieLifetime,
    /// `; Path=/; HttpOnly; ...`: the attributes, formatted once by the
    /// cookie crate when the configuration is built, so that issuing a
    /// cookie is one small allocation and a copy.
    suffix: String,
    /// The same for a response to a request that arrived over TLS (with
    /// `Secure` unless turned off there), also formatted once: the front
    /// only says how the request arrived, and no header is parsed and
    /// rebuilt to add the attribute.
    suffix_tls: String,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self::new("sticky")
    }
}

impl CookieConfig {
    /// A cookie called `name`, with `Path=/`, `HttpOnly`, `SameSite=Lax`, session lifetime.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: Some("/".into()),
            domain: None,
            secure: false,
            secure_over_tls: true,
            http_only: true,
            same_site: Some(SameSite::Lax),
            lifetime: CookieLifetime::Session,
            suffix: String::new(),
            suffix_tls: String::new(),
        }
        .formatted()
    }

    /// Formats the attributes with the cookie crate (quoting, order, names),
    /// for plain and for TLS requests.
    fn formatted(mut self) -> Self {
        self.suffix = self.format_suffix(self.secure);
        self.suffix_tls = self.format_suffix(self.secure || self.secure_over_tls);
        self
    }

    fn format_suffix(&self, secure: bool) -> String {
        let mut c = cookie::Cookie::new(self.name.as_str(), "");
        if let Some(p) = &self.path {
            c.set_path(p.as_str());
        }
        if let Some(d) = &self.domain {
            c.set_domain(d.as_str());
        }
        c.set_http_only(self.http_only);
        let same_site_none = self.same_site == Some(SameSite::None);
        c.set_secure(secure || same_site_none);
        c.set_same_site(self.same_site.map(|s| match s {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        }));
        if let CookieLifetime::Permanent(d) = self.lifetime {
            c.set_max_age(cookie::time::Duration::seconds(d.as_secs() as i64));
        }
        let full = c.to_string();
        full[self.name.len() + 1..].to_owned()
    }

    /// The cookie name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets `Path`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self.formatted()
    }

    /// Sets `Domain`.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self.formatted()
    }

    /// Sets `Secure` (only sent over HTTPS) on every cookie, however the
    /// request arrived.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self.formatted()
    }

    /// Whether the cookie is `Secure` in answers to requests that arrived
    /// over TLS, which the front reports with
    /// [`Routed::arrived_over_tls`](crate::Routed::arrived_over_tls). On by
    /// default: a site served over HTTPS wants its affinity cookie kept off
    /// plain HTTP. Off, only [`CookieConfig::secure`] decides (for a site
    /// also served over plain HTTP that must keep its sessions there).
    pub fn secure_over_tls(mut self, secure: bool) -> Self {
        self.secure_over_tls = secure;
        self.formatted()
    }

    /// Sets `HttpOnly` (not readable by page scripts). On by default.
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self.formatted()
    }

    /// Sets `SameSite`; `SameSite::None` also sets `Secure`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = Some(same_site);
        self.formatted()
    }

    /// Sets the cookie lifetime.
    pub fn lifetime(mut self, lifetime: CookieLifetime) -> Self {
        self.lifetime = lifetime;
        self.formatted()
    }

    /// The `Set-Cookie` value carrying `token`, as configured.
    pub fn set_cookie(&self, token: &str) -> HeaderValue {
        self.with_suffix(token, &self.suffix)
    }

    /// The `Set-Cookie` value carrying `token` in an answer to a request
    /// that arrived over TLS: `Secure` unless
    /// [`CookieConfig::secure_over_tls`] turned that off.
    pub fn set_cookie_over_tls(&self, token: &str) -> HeaderValue {
        self.with_suffix(token, &self.suffix_tls)
    }

    fn with_suffix(&self, token: &str, suffix: &str) -> HeaderValue {
        let mut v = String::with_capacity(self.name.len() + 1 + token.len() + suffix.len());
        v.push_str(&self.name);
        v.push('=');
        v.push_str(token);
        v.push_str(suffix);
        HeaderValue::try_from(v).expect("cookie attributes are valid header text")
    }
}

/// The `;`-separated pieces of one `Cookie` header, untrimmed, exactly as
/// `split(|&b| b == b';')` yields them (a trailing empty piece included).
///
/// Each separator is found with `memchr`, which looks at a machine word or a
/// vector of bytes per step rather than calling a closure per byte: an
/// 80-byte `Cookie: sticky=<token>` header is a handful of steps.
struct Pieces<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(b';', rest) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[inline]
fn pieces(v: &[u8]) -> Pieces<'_> {
    Pieces { rest: Some(v) }
}

/// Where a piece's first `=` is. A plain loop, not `memchr`: the `=` ends a
/// short name, and the call's set-up cost more than the few bytes before it.
#[inline]
fn name_end(pair: &[u8]) -> Option<usize> {
    pair.iter().position(|&b| b == b'=')
}

/// Where a piece's text starts and ends once spaces and tabs around it are
/// trimmed (`start == end` for a blank piece).
#[inline]
fn trimmed(s: &[u8]) -> (usize, usize) {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    (start, end)
}

#[inline]
fn trim(s: &[u8]) -> &[u8] {
    let (start, end) = trimmed(s);
    &s[start..end]
}

/// A trimmed piece's cookie name: up to its first `=` (all of it if none),
/// trimmed. The piece's start is trimmed already, so only the name's end is.
#[inline]
fn name_of(piece: &[u8]) -> &[u8] {
    trim_end(&piece[..name_end(piece).unwrap_or(piece.len())])
}

/// `s` without the spaces and tabs at its end.
#[inline]
fn trim_end(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |e| e + 1);
    &s[..end]
}

/// The value of the first cookie called `name`, without allocating.
///
/// A piece is `name`'s when, past leading spaces and tabs, it starts with
/// `name` and then, past spaces and tabs, `=`: each piece is looked at
/// where it starts, and the next one found with `memchr`, with no
/// trimming or name search for the cookies that are not ours. A name that
/// could never be a trimmed cookie name (with a `=` or `;`, or spaces or
/// tabs at its ends) is never found.
pub fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    if name.iter().any(|&b| b == b'=' || b == b';') || trim(name).len() != name.len() {
        return None;
    }
    headers
        .get_all(COOKIE)
        .iter()
        .find_map(|v| find_in(v.as_bytes(), name))
}

/// [`find_cookie`] in one `Cookie` header.
fn find_in<'a>(v: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let mut rest = v;
    loop {
        let start = rest.iter().position(|b| !is_blank(b)).unwrap_or(rest.len());
        let piece = &rest[start..];
        if let Some(after) = piece.strip_prefix(name) {
            let eq = after.iter().position(|b| !is_blank(b));
            if let Some(eq) = eq.filter(|&i| after[i] == b'=') {
                let value = &after[eq + 1..];
                let end = memchr::memchr(b';', value).unwrap_or(value.len());
                return Some(trim(&value[..end]));
            }
        }
        rest = &piece[memchr::memchr(b';', piece)? + 1..];
    }
}

/// What one `Cookie` header holds, from a single scan of its bytes: whether
/// it has a cookie called `name`, and where its other cookies are.
struct Scan {
    /// A cookie called `name` is there.
    ours: bool,
    /// How many other, non-blank cookies there are.
    others: usize,
    /// Where the first other cookie starts and the last one ends, trimmed.
    span: (usize, usize),
    /// Whether the other cookies follow one another with exactly `"; "`
    /// between them, as [`kept`] would join them: then the kept value is
    /// the bytes of `span`, copied once, with nothing to join.
    run: bool,
    /// The length of the other cookies joined with `"; "`.
    len: usize,
    /// Where the value of the first of ours with a `=` is, trimmed: what
    /// [`find_cookie`] finds in this header.
    value: Option<(usize, usize)>,
}

/// Scans one `Cookie` header for `name` and the other cookies. A piece is
/// ours when its name (up to its first `=`, trimmed) is `name`; any other
/// piece that is not blank is the application's.
fn scan(v: &[u8], name: &[u8]) -> Scan {
    let mut s = Scan {
        ours: false,
        others: 0,
        span: (0, 0),
        run: true,
        len: 0,
        value: None,
    };
    let mut at = 0;
    for piece in pieces(v) {
        let offset = at;
        at += piece.len() + 1;
        let (start, end) = trimmed(piece);
        let pair = &piece[start..end];
        // Most cookies are told from ours by their first byte, before their
        // name is looked for.
        let maybe_ours = match name.first() {
            Some(c) => pair.first() == Some(c),
            None => true,
        };
        let eq = if maybe_ours { name_end(pair) } else { None };
        if maybe_ours && trim_end(&pair[..eq.unwrap_or(pair.len())]) == name {
            s.ours = true;
            if let (None, Some(eq)) = (s.value, eq) {
                let (a, b) = trimmed(&pair[eq + 1..]);
                let at = offset + start + eq + 1;
                s.value = Some((at + a, at + b));
            }
            continue;
        }
        if start == end {
            continue;
        }
        let (start, end) = (offset + start, offset + end);
        if s.others == 0 {
            s.span.0 = start;
        } else {
            s.run &= &v[s.span.1..start] == b"; ";
            s.len += 2;
        }
        s.span.1 = end;
        s.len += end - start;
        s.others += 1;
    }
    s
}

/// Removes every cookie called `name` from the request's `Cookie` headers,
/// keeping the application's cookies byte for byte. Allocates only when the
/// cookie shares a header with other cookies, and then once.
///
/// The usual request has one `Cookie` header, found once and scanned once:
/// that scan says whether ours is there, whether anything else is, and
/// whether the rest is one run of the value (`theme=dark; sticky=<token>`
/// keeps `theme=dark`), copied as it stands rather than taken apart and
/// joined again.
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let name = name.as_bytes();
    if strip_lone_header(headers, name) {
        return;
    }
    let (mut any_ours, mut any_other, mut count) = (false, false, 0usize);
    for v in headers.get_all(COOKIE) {
        let s = scan(v.as_bytes(), name);
        any_ours |= s.ours;
        any_other |= s.others > 0;
        count += 1;
    }
    if !any_ours {
        return;
    }
    // Common case for HTTP/2: every Cookie header holds nothing but ours, so
    // dropping them all needs no rewrite and no allocation.
    if !any_other {
        headers.remove(COOKIE);
        return;
    }
    // One header in a full map: rewritten in place, without `entry`.
    if count == 1 {
        let kept = headers.get(COOKIE).and_then(|v| {
            let v = v.as_bytes();
            kept(v, name, &scan(v, name))
        });
        match (kept, headers.get_mut(COOKIE)) {
            (Some(kept), Some(v)) => *v = kept,
            _ => {
                headers.remove(COOKIE);
            }
        }
        return;
    }
    let old: Vec<HeaderValue> = match headers.entry(COOKIE) {
        http::header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
        http::header::Entry::Vacant(_) => return,
    };
    for v in old {
        let s = scan(v.as_bytes(), name);
        if !s.ours {
            headers.append(COOKIE, v);
            continue;
        }
        if let Some(kept) = kept(v.as_bytes(), name, &s) {
            headers.append(COOKIE, kept);
        }
    }
}

/// [`strip_cookie`] for the usual request, with one `Cookie` header: one
/// scan, and the header found once (`entry` hashes the name for the lookup
/// and the edit both, where `get_all` then `get_mut` or `remove` hashed it
/// twice). True when done; false leaves several headers, or a map with no
/// room to spare, to the general case: `entry` makes room for an insert,
/// and would reallocate a map its server sized exactly.
fn strip_lone_header(headers: &mut HeaderMap, name: &[u8]) -> bool {
    if headers.keys_len() >= headers.capacity() {
        return false;
    }
    let http::header::Entry::Occupied(mut e) = headers.entry(COOKIE) else {
        return true;
    };
    let mut values = e.iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    let v = v.as_bytes();
    let s = scan(v, name);
    if !s.ours {
        return true;
    }
    // Ours alone: the header goes, with no rewrite and no allocation. Ours
    // among the application's: rewritten in place.
    match kept(v, name, &s) {
        Some(kept) => {
            e.insert(kept);
        }
        None => {
            e.remove();
        }
    }
    true
}

/// What [`take_cookie`] did.
pub(crate) enum Take {
    /// Our cookie was in the request's one `Cookie` header, and every
    /// cookie called `name` is removed from it: the value [`find_cookie`]
    /// would have found.
    Taken(Taken),
    /// The request has no `Cookie` header, or one with no value of ours:
    /// [`find_cookie`] finds nothing, and the headers are as they came.
    Absent,
    /// Several `Cookie` headers, or a map with no room to spare: nothing
    /// was done; find, then strip, as usual.
    Other,
}

/// Our cookie's value, in the `Cookie` header value it was taken out with.
pub(crate) struct Taken {
    old: HeaderValue,
    value: (usize, usize),
}

impl Taken {
    /// The value, as [`find_cookie`] finds it.
    pub(crate) fn value(&self) -> &[u8] {
        &self.old.as_bytes()[self.value.0..self.value.1]
    }
}

/// [`find_cookie`] then [`strip_cookie`], for the usual request with one
/// `Cookie` header, in one lookup and one scan of it: our cookie's value
/// is read from the header value taken out of the map. Removes nothing
/// when `find_cookie` finds nothing (a token-less request keeps its
/// headers as they came).
pub(crate) fn take_cookie(headers: &mut HeaderMap, name: &str) -> Take {
    let name = name.as_bytes();
    // `entry` makes room for an insert: a full map is left to the general
    // case, which never grows it (see `strip_lone_header`).
    if headers.keys_len() >= headers.capacity() {
        return Take::Other;
    }
    let http::header::Entry::Occupied(mut e) = headers.entry(COOKIE) else {
        return Take::Absent;
    };
    let mut values = e.iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return Take::Other;
    };
    let v = v.as_bytes();
    let s = scan(v, name);
    let Some(value) = s.value else {
        return Take::Absent;
    };
    let old = match kept(v, name, &s) {
        Some(kept) => e.insert(kept),
        None => e.remove(),
    };
    Take::Taken(Taken { old, value })
}

/// A `Cookie` value's other cookies (as [`scan`] found them), trimmed and
/// joined with "; ", in one allocation of the exact length (a `Vec` with
/// room to spare costs `Bytes` a second allocation); `None` if none is left.
fn kept(v: &[u8], name: &[u8], s: &Scan) -> Option<HeaderValue> {
    if s.others == 0 {
        return None;
    }
    if s.run {
        return HeaderValue::from_bytes(&v[s.span.0..s.span.1]).ok();
    }
    let mut joined: Vec<u8> = Vec::with_capacity(s.len);
    for p in pieces(&v[s.span.0..s.span.1]) {
        let p = trim(p);
        if p.is_empty() || name_of(p) == name {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(p);
    }
    HeaderValue::try_from(joined).ok()
}

/// Appends `Set-Cookie` (never replacing the application's own) and makes
/// the response uncacheable by shared caches, like HAProxy's `nocache`:
/// a response that pins a user must not be served to other users.
pub fn append_set_cookie(headers: &mut HeaderMap, set_cookie: HeaderValue) {
    headers.append(SET_COOKIE, set_cookie);
    mark_private(headers);
}

/// Makes a response private to one user: `Cache-Control: private` is added,
/// and `public` / `s-maxage` directives that would contradict it are dropped.
pub fn mark_private(headers: &mut HeaderMap) {
    if let Some(v) = private_cache_control(headers) {
        headers.insert(CACHE_CONTROL, v);
    }
}

/// The `Cache-Control` value that makes a response with these headers
/// private to one user, or `None` when it already is (`private`, `no-store`).
/// The value form of [`mark_private`], for adapters that edit headers
/// through their own methods.
pub fn private_cache_control(headers: &HeaderMap) -> Option<HeaderValue> {
    if !headers.contains_key(CACHE_CONTROL) {
        return Some(HeaderValue::from_static("private"));
    }
    let existing: Vec<&str> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let lower = |d: &str| d.to_ascii_lowercase();
    if existing
        .iter()
        .any(|d| matches!(lower(d).as_str(), "private" | "no-store"))
    {
        return None;
    }
    let mut out = String::from("private");
    for d in existing {
        let l = lower(d);
        if l == "public" || l.starts_with("s-maxage") {
            continue;
        }
        out.push_str(", ");
        out.push_str(d);
    }
    HeaderValue::try_from(out).ok()
}

/// The edits that remove every cookie called `name` from the request's
/// `Cookie` headers, keeping the application's cookies byte for byte: the
/// value form of [`strip_cookie`] (same result once applied). Our cookie
/// alone in its headers is one removal, with no allocation.
pub fn strip_cookie_edits(headers: &HeaderMap, name: &str) -> HeaderEdits {
    let name = name.as_bytes();
    let (mut any_ours, mut any_other) = (false, false);
    for v in headers.get_all(COOKIE) {
        let s = scan(v.as_bytes(), name);
        any_ours |= s.ours;
        any_other |= s.others > 0;
    }
    let mut edits = HeaderEdits::new();
    if !any_ours {
        return edits;
    }
    edits.push(HeaderEdit::remove(COOKIE));
    if any_other {
        for v in headers.get_all(COOKIE) {
            let s = scan(v.as_bytes(), name);
            if !s.ours {
                edits.push(HeaderEdit::append(COOKIE, v.clone()));
            } else if let Some(kept) = kept(v.as_bytes(), name, &s) {
                edits.push(HeaderEdit::append(COOKIE, kept));
            }
        }
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    use http::HeaderName;

    #[test]
    fn finds_in_any_cookie_header() {
        let h = map(&["a=1; b=2", "sticky=TOKEN", "c=3"]);
        assert_eq!(find_cookie(&h, "sticky"), Some(&b"TOKEN"[..]));
        assert_eq!(find_cookie(&h, "b"), Some(&b"2"[..]));
        assert_eq!(find_cookie(&h, "stick"), None);
        assert_eq!(find_cookie(&map(&["xsticky=1"]), "sticky"), None);
        // Names no trimmed cookie name can be, as the old codec found none.
        assert_eq!(find_cookie(&map(&["s;x=1"]), "s;x"), None);
        assert_eq!(find_cookie(&map(&["a=b=1"]), "a=b"), None);
        assert_eq!(find_cookie(&map(&["sticky =1"]), "sticky "), None);
        assert_eq!(find_cookie(&map(&[" \t=1"]), ""), Some(&b"1"[..]));
        assert_eq!(find_cookie(&map(&["s x = 1 "]), "s x"), Some(&b"1"[..]));
    }

    #[test]
    fn strip_edits_match_strip_cookie() {
        for cookies in [
            &["sticky=T"][..],
            &["a=1; sticky=T; b=2"],
            &["a=1; sticky=T; b=2", "sticky=T", "c=3"],
            &["a=1", "b=2"],
            &[],
        ] {
            let mut stripped = map(cookies);
            strip_cookie(&mut stripped, "sticky");
            let mut edited = map(cookies);
            let edits = strip_cookie_edits(&edited, "sticky");
            edits.apply(&mut edited);
            assert_eq!(stripped, edited, "{cookies:?}");
        }
        let alone = strip_cookie_edits(&map(&["sticky=T"]), "sticky");
        assert_eq!(alone.len(), 1, "our cookie alone: one removal");
    }

    #[test]
    fn strips_only_ours() {
        let mut h = map(&["a=1; sticky=T; b=2", "sticky=T", "c=3"]);
        strip_cookie(&mut h, "sticky");
        let all: Vec<_> = h
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(all, ["a=1; b=2", "c=3"]);
        let mut untouched = map(&["stickyx=1; a=2"]);
        strip_cookie(&mut untouched, "sticky");
        assert_eq!(untouched.get(COOKIE).unwrap(), "stickyx=1; a=2");
    }

    /// The codec as it was before the single-scan rewrite, kept as the
    /// oracle the rewrite must match byte for byte.
    mod reference {
        use super::super::trim;
        use http::header::COOKIE;
        use http::{HeaderMap, HeaderValue};

        fn pair_name(pair: &[u8]) -> &[u8] {
            trim(pair.split(|&b| b == b'=').next().unwrap_or(b""))
        }

        pub(super) fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
            headers
                .get_all(COOKIE)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
                .filter_map(|pair| {
                    let pair = trim(pair);
                    let eq = pair.iter().position(|&b| b == b'=')?;
                    Some((trim(&pair[..eq]), trim(&pair[eq + 1..])))
                })
                .find(|(n, _)| *n == name.as_bytes())
                .map(|(_, v)| v)
        }

        pub(super) fn strip_cookie(headers: &mut HeaderMap, name: &str) {
            let ours = |p: &[u8]| pair_name(p) == name.as_bytes();
            let has = |v: &HeaderValue| v.as_bytes().split(|&b| b == b';').any(ours);
            if !headers.get_all(COOKIE).iter().any(has) {
                return;
            }
            let only_ours = |v: &HeaderValue| {
                v.as_bytes()
                    .split(|&b| b == b';')
                    .all(|p| trim(p).is_empty() || ours(p))
            };
            if headers.get_all(COOKIE).iter().all(only_ours) {
                headers.remove(COOKIE);
                return;
            }
            let old: Vec<HeaderValue> = match headers.entry(COOKIE) {
                http::header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
                http::header::Entry::Vacant(_) => return,
            };
            for v in old {
                if !has(&v) {
                    headers.append(COOKIE, v);
                    continue;
                }
                let kept: Vec<&[u8]> = v
                    .as_bytes()
                    .split(|&b| b == b';')
                    .map(trim)
                    .filter(|p| !p.is_empty() && !ours(p))
                    .collect();
                if kept.is_empty() {
                    continue;
                }
                let joined = kept.join(&b"; "[..]);
                if let Ok(v) = HeaderValue::from_bytes(&joined) {
                    headers.append(COOKIE, v);
                }
            }
        }
    }

    fn cookie_headers() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
        use proptest::prelude::*;
        // Few distinct bytes, so names collide with ours and separators abound.
        let byte = prop_oneof![
            Just(b' '),
            Just(b'\t'),
            Just(b';'),
            Just(b'='),
            Just(b's'),
            Just(b'x'),
            Just(b'a'),
            Just(0xc3u8),
        ];
        let chunk = prop_oneof![
            proptest::collection::vec(byte, 0..6),
            Just(b"sticky".to_vec()),
            Just(b"sticky=TOKEN".to_vec()),
            Just(b"; ".to_vec()),
            Just(b"theme=dark".to_vec()),
            Just(b"stickyx=1".to_vec()),
            Just(b" sticky = T ".to_vec()),
        ];
        let header = proptest::collection::vec(chunk, 0..6).prop_map(|c| c.concat());
        proptest::collection::vec(header, 0..4)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2048, failure_persistence: None, ..Default::default()
        })]

        /// The single-scan codec matches the old one on any `Cookie` headers
        /// (several headers, odd spacing, blank pieces, our name as a prefix
        /// of another, ours repeated), for our name and for the empty and
        /// whitespace edge-case names; the edit form gives the same result.
        #[test]
        fn matches_the_reference_codec(
            headers in cookie_headers(),
            name in proptest::prop_oneof![
                proptest::strategy::Just("sticky"),
                proptest::strategy::Just("s"),
                proptest::strategy::Just(""),
                proptest::strategy::Just(" sticky"),
                proptest::strategy::Just("a=b"),
                proptest::strategy::Just("s;x"),
                proptest::strategy::Just("s x"),
            ],
            full in proptest::bool::ANY,
        ) {
            let mut h = HeaderMap::new();
            h.append(http::header::HOST, HeaderValue::from_static("example.com"));
            for v in &headers {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(COOKIE, v);
                }
            }
            // A map with no room to spare takes the path that does not grow it.
            let mut filler = 0;
            while full && h.keys_len() < h.capacity() {
                h.insert(
                    HeaderName::from_bytes(format!("x-fill-{filler}").as_bytes()).unwrap(),
                    HeaderValue::from_static("1"),
                );
                filler += 1;
            }
            let capacity = h.capacity();
            proptest::prop_assert_eq!(find_cookie(&h, name), reference::find_cookie(&h, name));
            let mut edited = h.clone();
            strip_cookie_edits(&h, name).apply(&mut edited);
            let (mut ours, mut theirs) = (h.clone(), h);
            strip_cookie(&mut ours, name);
            reference::strip_cookie(&mut theirs, name);
            proptest::prop_assert_eq!(&ours, &theirs);
            proptest::prop_assert_eq!(&edited, &ours, "the edits' result is strip_cookie's");
            if headers.len() <= 1 {
                // Several headers are taken out and put back, which may grow it.
                proptest::prop_assert_eq!(ours.capacity(), capacity, "one header: never grown");
            }
        }
    }

    #[test]
    fn set_cookie_attributes() {
        let c = CookieConfig::new("s")
            .path("/app")
            .domain("example.com")
            .same_site(SameSite::None)
            .lifetime(CookieLifetime::Permanent(Duration::from_secs(3600)));
        let v = c.set_cookie("TOK");
        let s = v.to_str().unwrap();
        for part in [
            "s=TOK",
            "Path=/app",
            "Domain=example.com",
            "Secure",
            "HttpOnly",
            "SameSite=None",
            "Max-Age=3600",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        let session = CookieConfig::new("s")
            .http_only(false)
            .same_site(SameSite::Strict)
            .set_cookie("x");
        let s = session.to_str().unwrap();
        assert!(!s.contains("Max-Age") && !s.contains("HttpOnly") && !s.contains("Secure"));
        assert!(s.contains("SameSite=Strict"));
    }

    #[test]
    fn appends_and_marks_private() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("app=1"));
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60, s-maxage=600"),
        );
        append_set_cookie(&mut h, HeaderValue::from_static("sticky=x"));
        assert_eq!(h.get_all(SET_COOKIE).iter().count(), 2);
        assert_eq!(h.get(CACHE_CONTROL).unwrap(), "private, max-age=60");
        let mut none = HeaderMap::new();
        mark_private(&mut none);
        assert_eq!(none.get(CACHE_CONTROL).unwrap(), "private");
        let mut nostore = HeaderMap::new();
        nostore.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        mark_private(&mut nostore);
        assert_eq!(nostore.get(CACHE_CONTROL).unwrap(), "no-store");
    }
}
