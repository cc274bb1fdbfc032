//! The answers of the app, reused for a while: bounded, least recently used
//! first out, keyed by a digest of what was forwarded (never the
//! credentials themselves).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use ring::digest;
use wsgate_plugin_api::{Identity, Rejection};

/// A SHA-256 digest of one call's forwarded parts.
pub type Key = [u8; 32];

/// Builds a [`Key`] from the parts of a call, each length-prefixed so that
/// no two different sequences of parts digest alike.
pub struct KeyBuilder(digest::Context);

impl KeyBuilder {
    pub fn new() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }

    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    pub fn finish(self) -> Key {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.0.finish().as_ref());
        key
    }
}

struct Entry {
    answer: Result<Identity, Rejection>,
    until: Instant,
}

/// The cache of one authenticator instance.
pub struct Cache {
    entries: Mutex<LruCache<Key, Entry>>,
    ttl: Duration,
    negative_ttl: Duration,
}

impl Cache {
    /// `None` when `ttl` or `entries` is zero: nothing is cached.
    pub fn new(entries: usize, ttl: Duration, negative_ttl: Duration) -> Option<Self> {
        let entries = NonZeroUsize::new(entries).filter(|_| !ttl.is_zero())?;
        Some(Self {
            entries: Mutex::new(LruCache::new(entries)),
            ttl,
            negative_ttl,
        })
    }

    /// The answer stored for `key`, if it has not expired.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Result<Identity, Rejection>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some(entry) if entry.until > now => Some(entry.answer.clone()),
            Some(_) => {
                entries.pop(key);
                None
            }
            None => None,
        }
    }

    /// Stores an answer: a yes for `ttl`, a refusal (401/403) for
    /// `negative_ttl` (not at all when that is zero); an outage never.
    pub fn put(&self, key: Key, answer: &Result<Identity, Rejection>, now: Instant) {
        let ttl = match answer {
            Ok(_) => self.ttl,
            Err(Rejection::Unavailable(_)) => return,
            Err(_) => self.negative_ttl,
        };
        if ttl.is_zero() {
            return;
        }
        let entry = Entry {
            answer: answer.clone(),
            until: now + ttl,
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        let mut k = KeyBuilder::new();
        k.part(text.as_bytes());
        k.finish()
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn parts_are_delimited() {
        let mut a = KeyBuilder::new();
        a.part(b"ab").part(b"c");
        let mut b = KeyBuilder::new();
        b.part(b"a").part(b"bc");
        assert_ne!(a.finish(), b.finish());
        assert_eq!(key("x"), key("x"));
    }

    #[test]
    fn entries_expire_and_the_oldest_used_goes_first() {
        let cache = Cache::new(2, 10 * SEC, Duration::ZERO).expect("on");
        let now = Instant::now();
        let yes = Ok(Identity::user("alice"));
        cache.put(key("a"), &yes, now);
        cache.put(key("b"), &Ok(Identity::user("bob")), now);
        assert_eq!(cache.get(&key("a"), now), Some(yes.clone()));
        // `b` is now the least recently used: `c` pushes it out.
        cache.put(key("c"), &Ok(Identity::user("carol")), now);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key("b"), now), None);
        assert!(cache.get(&key("a"), now).is_some());
        assert_eq!(cache.get(&key("a"), now + 10 * SEC), None);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn refusals_live_at_most_negative_ttl_and_outages_never() {
        let now = Instant::now();
        let no = Err(Rejection::Unauthorized("no".to_string()));
        let off = Cache::new(8, 10 * SEC, Duration::ZERO).expect("on");
        off.put(key("a"), &no, now);
        assert_eq!(off.get(&key("a"), now), None);

        let short = Cache::new(8, 10 * SEC, SEC).expect("on");
        short.put(key("a"), &no, now);
        assert_eq!(short.get(&key("a"), now), Some(no.clone()));
        assert_eq!(short.get(&key("a"), now + SEC), None);
        short.put(
            key("b"),
            &Err(Rejection::Unavailable("down".to_string())),
            now,
        );
        assert_eq!(short.get(&key("b"), now), None);
    }

    #[test]
    fn zero_turns_it_off() {
        assert!(Cache::new(0, SEC, Duration::ZERO).is_none());
        assert!(Cache::new(8, Duration::ZERO, Duration::ZERO).is_none());
    }
}
