//! The server's reading connections, handed out one request at a time.
//!
//! A search or a deep listing can take seconds; taken round-robin, a feature page could
//! wait behind one while another connection stood idle, and a burst of such requests made
//! every page wait without bound. So a request takes any free connection; the heavy kinds
//! may hold all but one of them (a feature page or the totals always find the last), no more
//! than [`MAX_WAITING`] requests of each kind wait at once (a free connection is taken
//! without waiting, however many wait for another), and none waits longer than its
//! deadline: the others are answered 503 at once, which a client can retry.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Requests of one kind (light or heavy) that may wait for a connection at once; one more
/// is refused.
pub const MAX_WAITING: usize = 64;

/// What a request will do with its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// One feature, a few briefs, the totals: milliseconds.
    Light,
    /// A search or a listing: up to the query time limit.
    Heavy,
}

/// Why no connection was handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// [`MAX_WAITING`] requests were already waiting.
    Crowded,
    /// The deadline passed while waiting.
    TimedOut,
}

#[derive(Debug, Default)]
struct Use {
    busy: Vec<bool>,
    heavy: usize,
    /// Requests waiting, light and heavy apart: a crowd of searches must not turn away a
    /// feature page.
    waiting: [usize; 2],
}

impl Use {
    /// A free item `work` may take now (see the module docs), marked busy.
    fn take(&mut self, work: Work, items: usize) -> Option<usize> {
        let heavy_room = work == Work::Light || self.heavy + 1 < items;
        let index = self.busy.iter().position(|b| !b).filter(|_| heavy_room)?;
        self.busy[index] = true;
        self.heavy += usize::from(work == Work::Heavy);
        Some(index)
    }
}

/// A fixed set of items lent to one holder at a time.
pub struct Pool<T> {
    items: Vec<Mutex<T>>,
    use_: Mutex<Use>,
    freed: Condvar,
}

/// One item of a [`Pool`], given back when dropped.
pub struct Lease<'a, T> {
    pool: &'a Pool<T>,
    index: usize,
    work: Work,
    item: Option<MutexGuard<'a, T>>,
}

impl<T> Pool<T> {
    /// A pool of `items` (at least two: one is kept for light work).
    pub fn new(items: Vec<T>) -> Self {
        assert!(items.len() >= 2, "a pool keeps one item for light work");
        Self {
            use_: Mutex::new(Use {
                busy: vec![false; items.len()],
                ..Use::default()
            }),
            items: items.into_iter().map(Mutex::new).collect(),
            freed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, Use> {
        self.use_.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free item for `work`, waiting for one until `deadline`.
    pub fn lease(&self, work: Work, deadline: Instant) -> Result<Lease<'_, T>, Refused> {
        let kind = usize::from(work == Work::Heavy);
        let mut state = self.state();
        // A free item is taken at once, however many wait for another kind of work.
        if let Some(index) = state.take(work, self.items.len()) {
            drop(state);
            return Ok(self.lent(index, work));
        }
        if state.waiting[kind] >= MAX_WAITING {
            return Err(Refused::Crowded);
        }
        state.waiting[kind] += 1;
        loop {
            if let Some(index) = state.take(work, self.items.len()) {
                state.waiting[kind] -= 1;
                drop(state);
                return Ok(self.lent(index, work));
            }
            let now = Instant::now();
            if now >= deadline {
                state.waiting[kind] -= 1;
                return Err(Refused::TimedOut);
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl<T> Pool<T> {
    /// The lease of item `index`, which [`Use::take`] marked busy for `work`.
    fn lent(&self, index: usize, work: Work) -> Lease<'_, T> {
        let item = self.items[index].lock().unwrap_or_else(|p| p.into_inner());
        Lease {
            pool: self,
            index,
            work,
            item: Some(item),
        }
    }
}

impl<T> std::ops::Deref for Lease<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item.as_ref().expect("held until dropped")
    }
}

impl<T> std::ops::DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().expect("held until dropped")
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        // The item first: a waiter woken below must find it unlocked.
        self.item = None;
        let mut state = self.pool.state();
        state.busy[self.index] = false;
        state.heavy -= usize::from(self.work == Work::Heavy);
        drop(state);
        // Light and heavy waiters wait for different things: wake them all to look.
        self.pool.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[test]
    fn heavy_work_leaves_one_item_for_light_work() {
        let pool = Pool::new(vec![0, 1, 2, 3]);
        let heavy: Vec<_> = (0..3)
            .map(|_| pool.lease(Work::Heavy, soon()).unwrap())
            .collect();
        assert_eq!(
            pool.lease(Work::Heavy, soon()).err(),
            Some(Refused::TimedOut)
        );
        let light = pool.lease(Work::Light, soon()).unwrap();
        assert_eq!(
            pool.lease(Work::Light, soon()).err(),
            Some(Refused::TimedOut)
        );
        drop(light);
        // A freed item goes to whoever waits for it.
        let mut heavy = heavy.into_iter();
        let first = heavy.next().unwrap();
        let index = first.index;
        let pool = &pool;
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                pool.lease(Work::Heavy, Instant::now() + Duration::from_secs(10))
                    .map(|l| l.index)
            });
            std::thread::sleep(Duration::from_millis(20));
            drop(first);
            assert_eq!(waiter.join().unwrap(), Ok(index));
        });
    }

    #[test]
    fn a_crowd_of_waiters_is_refused_at_once() {
        let pool = Pool::new(vec![(), ()]);
        let held: Vec<_> = (0..2)
            .map(|_| pool.lease(Work::Light, soon()).unwrap())
            .collect();
        let pool = &pool;
        std::thread::scope(|s| {
            let far = Instant::now() + Duration::from_millis(500);
            let waiters: Vec<_> = (0..MAX_WAITING)
                .map(|_| s.spawn(move || pool.lease(Work::Light, far).err()))
                .collect();
            // Let them all start waiting.
            while pool.state().waiting[0] < MAX_WAITING {
                std::thread::yield_now();
            }
            let started = Instant::now();
            assert_eq!(pool.lease(Work::Light, far).err(), Some(Refused::Crowded));
            assert!(started.elapsed() < Duration::from_millis(100));
            for w in waiters {
                assert_eq!(w.join().unwrap(), Some(Refused::TimedOut));
            }
        });
        assert_eq!(pool.state().waiting, [0, 0]);
        drop(held);
    }

    #[test]
    fn a_crowd_of_heavy_waiters_does_not_turn_light_work_away() {
        let pool = Pool::new(vec![0, 1, 2, 3]);
        let heavy: Vec<_> = (0..3)
            .map(|_| pool.lease(Work::Heavy, soon()).unwrap())
            .collect();
        let pool = &pool;
        std::thread::scope(|s| {
            let far = Instant::now() + Duration::from_millis(300);
            let waiters: Vec<_> = (0..MAX_WAITING)
                .map(|_| s.spawn(move || pool.lease(Work::Heavy, far).err()))
                .collect();
            while pool.state().waiting[1] < MAX_WAITING {
                std::thread::yield_now();
            }
            assert_eq!(pool.lease(Work::Heavy, far).err(), Some(Refused::Crowded));
            // The fourth item is free for light work, at once, again and again.
            for _ in 0..3 {
                let light = pool.lease(Work::Light, Instant::now()).unwrap();
                drop(light);
            }
            for w in waiters {
                assert_eq!(w.join().unwrap(), Some(Refused::TimedOut));
            }
        });
        drop(heavy);
    }
}
