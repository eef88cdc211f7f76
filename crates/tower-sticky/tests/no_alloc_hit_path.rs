//! The hit path (a request carrying a valid cookie) allocates nothing: read
//! the Cookie headers, open the token, look up the backend, decide, count the
//! request in flight, strip our cookie, finish. Checked with a counting
//! global allocator, so this file is its own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::COOKIE;
use http::Request;
use tower_sticky::lifecycle::EditOp;
use tower_sticky::token::{KeyRing, Token};
use tower_sticky::{BackendTable, Engine, Outcome, StickyConfig};

struct Counting;

thread_local! {
    // Only this test's thread is counted: the test harness's own threads
    // allocate whenever they like.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn hit_path_allocates_nothing() {
    let router = Engine::new(StickyConfig::new(KeyRing::generate()));
    let mut table = BackendTable::<String>::new();
    for i in 0..1000 {
        table.insert(format!("b{i}"), (), 0).unwrap();
    }
    let id = table.get(500).unwrap().id();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let sealed = router.codec().unwrap().seal(&Token::new(id, 7, now));
    // Our cookie alone in its header (as a browser sends it when it is the only
    // cookie for the path, and as HTTP/2 sends every cookie): stripping it is a
    // header removal, not a rewrite.
    let requests: Vec<_> = (0..100)
        .map(|_| {
            Request::builder()
                .header(COOKIE, format!("sticky={}", sealed.as_str()))
                .body(())
                .unwrap()
                .into_parts()
                .0
        })
        .collect();
    // Warm up lazily initialised state (thread-local RNG, tracing callsites).
    let mut d = router.decide(&table, &requests[0], |_| true);
    d.begin(&router, &table);
    drop(d);

    let mut parts = requests;
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    for p in parts.iter_mut() {
        let mut d = router.decide(&table, p, |_| true);
        assert_eq!(d.outcome(), Outcome::Pinned);
        // The value form of the edits (what pingora applies through its own
        // header methods) allocates nothing either: one removal.
        let edits = d.request_edits(&router, &p.headers);
        assert_eq!(edits.len(), 1);
        assert!(edits.iter().all(|e| e.op() == EditOp::Remove));
        drop(edits);
        d.prepare_request(&router, &mut p.headers);
        assert!(d.begin(&router, &table));
        let mut response_headers = http::HeaderMap::new();
        assert!(d.response_edits(&router, &response_headers).is_empty());
        d.tag_response(&router, &mut response_headers);
        d.finish(true);
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.load(Ordering::Relaxed), 0, "the hit path allocated");
    assert!(parts.iter().all(|p| p.headers.get(COOKIE).is_none()));
}
