//! Loading the parent snapshot's trees ahead of the walker.
//!
//! For each directory it enters, the walker needs the parent snapshot's tree of that directory:
//! a tree blob to read, authenticate, decrypt and decode. Done inline, that is about a third of
//! the walk of an unchanged tree. A prefetch thread loads these trees into the repository's tree
//! cache while the walker is busy with `lstat` and comparisons. The walk is depth first, so the
//! requests are kept on a stack: when the walker enters a directory, the subtrees of that
//! directory's parent tree go on top, first child uppermost, which is the order the walker will
//! want them. Requests beyond [`MAX_PENDING`] drop off the bottom (the walker then loads those
//! trees itself), so the thread never runs far ahead and the cache keeps what it loaded.
//!
//! The thread takes up to [`BATCH`] requests at a time and loads them together
//! ([`zaibei_repo::IndexedRepository::load_trees`]): neighbouring trees of a pack come with one
//! read, and their ids are hashed side by side.

use std::sync::{Condvar, Mutex, MutexGuard};

use zaibei_format::{Id, Tree};

use super::Context;

/// Most tree loads waiting at once.
pub const MAX_PENDING: usize = 1024;

/// Most trees the thread loads together: the lanes of the multi-buffer hash.
pub const BATCH: usize = 8;

/// The walker's side: asks for trees and waits for one being loaded.
#[derive(Default)]
pub(crate) struct Prefetcher {
    state: Mutex<State>,
    /// Signalled when a request arrives, a load ends, or the prefetcher closes.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<Id>,
    /// The trees the thread is loading now.
    loading: Vec<Id>,
    /// The thread waits for a request (only then does a request wake it).
    idle: bool,
    /// Walkers waiting for a load to end (only then does the end of a load wake anyone).
    waiting: usize,
    closed: bool,
}

impl Prefetcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the subtrees of `tree` (the parent snapshot's version of the directory the walker
    /// just entered), the first child to be loaded first.
    pub fn ask(&self, tree: &Tree) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let before = state.pending.len();
        state
            .pending
            .extend(tree.nodes.iter().rev().filter_map(|n| n.subtree));
        if state.pending.len() == before {
            return;
        }
        if state.pending.len() > MAX_PENDING {
            let excess = state.pending.len() - MAX_PENDING;
            state.pending.drain(..excess);
        }
        let idle = state.idle;
        drop(state);
        if idle {
            self.changed.notify_all();
        }
    }

    /// Returns once `id` is not being loaded by the prefetch thread (so the caller finds it in
    /// the cache instead of loading it a second time), and withdraws a request for `id` still
    /// waiting: the caller takes the tree out of the cache or loads it itself, and a load after
    /// that would leave an unused tree in the cache.
    pub fn wait_for(&self, id: &Id) {
        let mut state = self.lock();
        while state.loading.contains(id) {
            state.waiting += 1;
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
        }
        // The walker asks for the trees in the order they were queued: the request, if still
        // there, is at or near the top of the stack.
        if let Some(pos) = state.pending.iter().rposition(|p| p == id) {
            state.pending.remove(pos);
        }
    }

    /// Stops the prefetch thread after the load in progress.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.pending.clear();
        drop(state);
        self.changed.notify_all();
    }

    /// The prefetch thread ends (normally or by a panic): nothing is loading any more, and
    /// no waiter may wait for it.
    fn ended(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.loading.clear();
        state.pending.clear();
        drop(state);
        self.changed.notify_all();
    }

    /// The next trees to load (at most [`BATCH`], the one wanted first first) once the
    /// previous ones are loaded, waiting for a request; `None` once closed.
    fn next(&self) -> Option<Vec<Id>> {
        let mut state = self.lock();
        if !state.loading.is_empty() {
            state.loading.clear();
            if state.waiting > 0 {
                self.changed.notify_all();
            }
        }
        loop {
            if state.closed {
                return None;
            }
            if !state.pending.is_empty() {
                let from = state.pending.len().saturating_sub(BATCH);
                let mut batch = state.pending.split_off(from);
                batch.reverse();
                state.loading.clone_from(&batch);
                return Some(batch);
            }
            state.idle = true;
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle = false;
        }
    }
}

/// Closes the prefetcher when dropped.
pub(crate) struct CloseOnDrop<'p>(pub &'p Prefetcher);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The prefetch thread: loads requested trees into the tree cache until closed. A tree that
/// cannot be loaded is left for the walker, which reports it.
pub(crate) fn run(ctx: &Context<'_>, prefetcher: &Prefetcher) {
    struct Ended<'p>(&'p Prefetcher);
    impl Drop for Ended<'_> {
        fn drop(&mut self) {
            self.0.ended();
        }
    }
    let _ended = Ended(prefetcher);
    while let Some(batch) = prefetcher.next() {
        // Trees already in the cache come back at once.
        match ctx.runtime.block_on(ctx.repo.load_trees(&batch)) {
            Ok(loaded) => {
                for (id, tree) in loaded {
                    if let Err(e) = tree {
                        tracing::debug!("prefetching tree {}: {e}", id.short());
                    }
                }
            }
            Err(e) => tracing::debug!("prefetching trees: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zaibei_format::{Node, NodeKind};

    fn dir(name: &str, id: u8) -> Node {
        let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
        node.subtree = Some(Id([id; 32]));
        node
    }

    #[test]
    fn the_first_children_are_loaded_first_and_newer_requests_go_before_older() {
        let p = Prefetcher::default();
        let outer = Tree {
            nodes: (1..=BATCH as u8 + 2)
                .map(|i| dir(&format!("{i:02}"), i))
                .collect(),
        };
        let inner = Tree {
            nodes: vec![
                dir("c", 30),
                Node::new(b"f".to_vec(), NodeKind::File),
                dir("d", 31),
            ],
        };
        p.ask(&outer);
        let first: Vec<u8> = (1..=BATCH as u8).collect();
        let batch = p.next().unwrap();
        assert_eq!(
            batch.iter().map(|id| id.as_bytes()[0]).collect::<Vec<_>>(),
            first
        );
        assert_eq!(p.lock().loading, batch);
        p.ask(&inner);
        let order: Vec<u8> = std::iter::from_fn(|| {
            let mut state = p.lock();
            state.pending.pop().map(|id| id.as_bytes()[0])
        })
        .collect();
        assert_eq!(order, vec![30, 31, BATCH as u8 + 1, BATCH as u8 + 2]);
    }

    #[test]
    fn the_oldest_requests_drop_off_beyond_the_bound() {
        let p = Prefetcher::default();
        let nodes = (0..MAX_PENDING + 10)
            .map(|i| dir(&format!("{i:05}"), (i % 251) as u8))
            .collect();
        p.ask(&Tree { nodes });
        let state = p.lock();
        assert_eq!(state.pending.len(), MAX_PENDING);
        // The first child is still on top.
        assert_eq!(state.pending.last(), Some(&Id([0; 32])));
    }

    #[test]
    fn a_tree_the_walker_waited_for_is_not_loaded_after() {
        let p = Prefetcher::default();
        p.ask(&Tree {
            nodes: vec![dir("a", 1), dir("b", 2), dir("c", 3)],
        });
        // The walker got to `a` and `b` before the thread loaded them.
        p.wait_for(&Id([1; 32]));
        p.wait_for(&Id([2; 32]));
        assert_eq!(p.next(), Some(vec![Id([3; 32])]));
        assert!(p.lock().pending.is_empty());
    }

    #[test]
    fn close_wakes_the_thread_and_wait_for_returns_when_the_load_ends() {
        let p = Prefetcher::default();
        let id = Id([7; 32]);
        p.ask(&Tree {
            nodes: vec![dir("x", 7)],
        });
        assert_eq!(p.next(), Some(vec![id]));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| p.wait_for(&id));
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(
                !waiter.is_finished(),
                "wait_for returned while the tree was loading"
            );
            let closer = s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                p.close();
            });
            assert_eq!(p.next(), None);
            waiter.join().unwrap();
            closer.join().unwrap();
        });
    }
}
