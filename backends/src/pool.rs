//! A small free list of reusable resources (pipes, buffers).
//!
//! Sessions borrow a resource only while they pump and give it back as soon
//! as it holds nothing of theirs, so a thousand idle keep-alive connections
//! hold no pipe and no buffer; only sessions stalled with unsent bytes keep
//! one. That is what keeps splice clear of `pipe-user-pages-soft`.

use std::sync::Mutex;

/// Idle resources, at most `max_idle` of them kept.
#[derive(Debug)]
pub(crate) struct Pool<T> {
    idle: Mutex<Vec<T>>,
    max_idle: usize,
}

impl<T> Pool<T> {
    pub(crate) fn new(max_idle: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// An idle resource, or a new one from `make`.
    pub(crate) fn take<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let reused = self.lock().pop();
        match reused {
            Some(t) => Ok(t),
            None => make(),
        }
    }

    /// An idle resource, or a new one from `make`, which cannot fail.
    pub(crate) fn get(&self, make: impl FnOnce() -> T) -> T {
        let reused = self.lock().pop();
        reused.unwrap_or_else(make)
    }

    /// Keeps `t` for reuse, or drops it when enough are idle already.
    pub(crate) fn give(&self, t: T) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(t);
        }
    }

    /// How many are idle now.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // A panic while holding the lock cannot leave the Vec inconsistent
        // (push and pop are single steps), so poisoning is ignored.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_caps_idle() {
        let pool = Pool::new(2);
        let made = std::cell::Cell::new(0);
        let make = || -> Result<u32, ()> {
            made.set(made.get() + 1);
            Ok(made.get())
        };
        let a = pool.take(make).unwrap();
        let b = pool.take(make).unwrap();
        let c = pool.take(make).unwrap();
        assert_eq!(made.get(), 3);
        pool.give(a);
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.idle(), 2);
        pool.take(make).unwrap();
        assert_eq!(made.get(), 3, "an idle one was reused");
    }
}
