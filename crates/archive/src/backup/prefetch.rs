//! Loading the parent snapshot's trees ahead of the walker.
//!
//! For each directory it enters, the walker needs the parent snapshot's tree of that directory:
//! a tree blob to read, authenticate, decrypt and decode. Done inline, that is about a third of
//! the walk of an unchanged tree. A prefetch thread loads these trees while the walker is busy
//! with comparisons, and holds them until the walker takes them ([`Prefetcher::take`]).
//!
//! The thread loads the trees depth first, in the order the walker will enter the
//! directories, as far ahead as its budget allows. When the walker enters a directory
//! ([`Prefetcher::enter`]), the subtrees of its parent tree are requested, and once one of them
//! is loaded, its own subtrees are requested too, and so on down: by the time the walker enters
//! a child, the child's tree is loaded and the trees below it are on their way, so neither
//! thread waits for the other. Requests are kept on a stack: the subtrees of the directory just
//! entered or the tree just loaded go on top, first child uppermost, which is the order the
//! walker will want them. Requests beyond [`MAX_PENDING`] drop off the bottom (the walker then
//! loads those trees itself, or requests them again when it enters their parent). Keeping only
//! two levels ahead, as before, left the walker loading a fifth to a third of the trees itself
//! (1,068–1,807 of about 5,100 in an unchanged re-backup of the Linux tree).
//!
//! Memory is bounded: beyond [`MAX_READY_NODES`] entries in the trees loaded and not yet taken
//! no more subtrees of loaded trees are requested (only those of the directory entered), beyond
//! [`HELD_NODES`] nothing more is held (the walker loads such trees itself), and when the
//! walker leaves a directory ([`Prefetcher::leave`]) the trees of subdirectories it did not
//! enter (deleted or excluded since the parent snapshot) are dropped with every tree loaded
//! below them, and no longer loaded.
//!
//! The thread takes up to [`BATCH`] requests at a time and loads them together
//! ([`zaibei_repo::IndexedRepository::load_trees`]): a pack of trees is read whole once and
//! held in memory (at most 24 MiB of packs), and the batch's ids are hashed side by side.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use zaibei_format::{Id, Tree};
use zaibei_repo::{IdMap, IdSet};

use super::Context;

/// Most tree loads waiting at once.
pub const MAX_PENDING: usize = 1024;

/// Most trees the thread loads together: the lanes of the multi-buffer hash.
pub const BATCH: usize = 8;

/// Most entries in the trees loaded ahead and not taken yet, beyond which the thread requests
/// only what the walker asks for.
pub const MAX_READY_NODES: usize = 16 * 1024;

/// Most entries in the trees held for the walker, whatever asked for them: a tree loaded
/// beyond this is dropped, and the walker loads it itself.
pub const HELD_NODES: usize = 4 * MAX_READY_NODES;

/// A tree to load; `feed`: request its subtrees once loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    id: Id,
    feed: bool,
}

/// The walker's side: tells the thread where it is, and takes the trees it loaded.
#[derive(Default)]
pub(crate) struct Prefetcher {
    state: Mutex<State>,
    /// Signalled when a request arrives, a load ends, or the prefetcher closes.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<Request>,
    /// The trees the thread is loading now.
    loading: Vec<Request>,
    /// Trees loaded and not taken yet.
    ready: IdMap<Arc<Tree>>,
    /// Entries of the trees in `ready`.
    ready_nodes: usize,
    /// Trees pending or loading whose subtrees the walker wants once they are loaded.
    feed: IdSet,
    /// Trees loading that the walker will not take (it left their parent's directory).
    discard: IdSet,
    /// The thread waits for a request (only then does a request wake it).
    idle: bool,
    /// Walkers waiting for a load to end (only then does the end of a load wake anyone).
    waiting: usize,
    closed: bool,
}

impl State {
    /// Requests `id` unless it is loaded, loading or pending already; a tree known already but
    /// now wanted with its subtrees gets them requested (now, or once loaded).
    fn request(&mut self, id: Id, feed: bool) {
        if let Some(tree) = self.ready.get(&id) {
            if feed {
                let tree = Arc::clone(tree);
                self.request_subtrees(&tree, false);
            }
            return;
        }
        if self.loading.iter().chain(&self.pending).any(|r| r.id == id) {
            if feed {
                self.feed.insert(id);
            }
            return;
        }
        self.pending.push(Request { id, feed });
    }

    /// Requests the subtrees of `tree`, the first child to be loaded first (at most
    /// [`MAX_PENDING`]: any more would drop off the stack at once).
    fn request_subtrees(&mut self, tree: &Tree, feed: bool) {
        let first: Vec<Id> = tree
            .nodes
            .iter()
            .filter_map(|n| n.subtree)
            .take(MAX_PENDING)
            .collect();
        for id in first.into_iter().rev() {
            self.request(id, feed);
        }
        if self.pending.len() > MAX_PENDING {
            let excess = self.pending.len() - MAX_PENDING;
            self.pending.drain(..excess);
        }
    }

    /// Drops a tree loaded ahead that the walker will not take; true if it was there.
    fn drop_ready(&mut self, id: &Id) -> Option<Arc<Tree>> {
        let tree = self.ready.remove(id)?;
        self.ready_nodes -= tree.nodes.len();
        Some(tree)
    }
}

impl Prefetcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The walker entered the directory whose parent tree is `tree`: its subtrees are wanted
    /// next, and theirs soon after.
    pub fn enter(&self, tree: &Tree) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let before = (state.pending.len(), state.ready.len());
        state.request_subtrees(tree, true);
        let (idle, asked) = (
            state.idle,
            (state.pending.len(), state.ready.len()) != before,
        );
        drop(state);
        if idle && asked {
            self.changed.notify_all();
        }
    }

    /// The walker left the directory whose parent tree is `tree`: the trees of subdirectories
    /// it did not enter (deleted or excluded since) are dropped, with every tree below them
    /// loaded so far, and none of them is loaded any more.
    pub fn leave(&self, tree: &Tree) {
        let mut state = self.lock();
        let mut dropped = IdSet::default();
        // The loads go depth first, so a tree not entered may have been loaded all the way
        // down: everything loaded below it goes too, or it would stay in `ready` for good.
        let mut below: Vec<Id> = tree.nodes.iter().filter_map(|n| n.subtree).collect();
        while let Some(id) = below.pop() {
            if !dropped.insert(id) {
                continue;
            }
            if let Some(t) = state.drop_ready(&id) {
                below.extend(t.nodes.iter().filter_map(|n| n.subtree));
            }
        }
        // Those the walker entered were taken: none of these steps finds them.
        state.pending.retain(|r| !dropped.contains(&r.id));
        for id in &dropped {
            state.feed.remove(id);
        }
        let loading: Vec<Id> = state
            .loading
            .iter()
            .map(|r| r.id)
            .filter(|id| dropped.contains(id))
            .collect();
        state.discard.extend(loading);
    }

    /// The parent tree `id` for the directory the walker enters: the tree loaded ahead, after
    /// waiting if the thread is loading it now. `None` when it is not loaded (the walker loads
    /// it itself; a request for it still waiting is withdrawn).
    pub fn take(&self, id: &Id) -> Option<Arc<Tree>> {
        let mut state = self.lock();
        while state.loading.iter().any(|r| r.id == *id) {
            state.waiting += 1;
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
        }
        if let Some(tree) = state.drop_ready(id) {
            return Some(tree);
        }
        // The walker asks for the trees in the order they were requested: the request, if
        // still there, is at or near the top of the stack.
        if let Some(pos) = state.pending.iter().rposition(|r| r.id == *id) {
            state.pending.remove(pos);
        }
        state.feed.remove(id);
        None
    }

    /// Stops the prefetch thread after the load in progress.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.pending.clear();
        state.ready = IdMap::default();
        state.ready_nodes = 0;
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

    /// Hands over the trees of the batch just loaded (`None` for those that failed: the walker
    /// loads them again itself, and reports the error), and requests the subtrees of those
    /// wanted with theirs.
    fn loaded(&self, trees: Vec<(Id, Option<Arc<Tree>>)>) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        // The batch is over, whatever it answered.
        let loading = std::mem::take(&mut state.loading);
        // Subtrees of the first tree go on top: pushed last.
        for (id, tree) in trees.into_iter().rev() {
            let requested = loading.iter().any(|r| r.id == id && r.feed);
            let upgraded = state.feed.remove(&id);
            let Some(tree) = tree else { continue };
            if state.discard.remove(&id) || state.ready_nodes >= HELD_NODES {
                continue;
            }
            // Depth first, as the walker goes: the subtrees of a tree it wants are wanted
            // with theirs, as far ahead as the budget of loaded entries allows.
            if (upgraded || requested) && state.ready_nodes < MAX_READY_NODES {
                state.request_subtrees(&tree, true);
            }
            if !state.ready.contains_key(&id) {
                state.ready_nodes += tree.nodes.len();
                state.ready.insert(id, tree);
            }
        }
        if state.waiting > 0 {
            self.changed.notify_all();
        }
    }

    /// The next trees to load (at most [`BATCH`], the one wanted first first), waiting for a
    /// request; `None` once closed.
    fn next(&self) -> Option<Vec<Id>> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if !state.pending.is_empty() {
                let from = state.pending.len().saturating_sub(BATCH);
                let mut batch = state.pending.split_off(from);
                batch.reverse();
                let ids = batch.iter().map(|r| r.id).collect();
                state.loading = batch;
                return Some(ids);
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

/// The prefetch thread: loads requested trees until closed. A tree that cannot be loaded is
/// left for the walker, which reports it.
pub(crate) fn run(ctx: &Context<'_>, prefetcher: &Prefetcher) {
    struct Ended<'p>(&'p Prefetcher);
    impl Drop for Ended<'_> {
        fn drop(&mut self) {
            self.0.ended();
        }
    }
    let _ended = Ended(prefetcher);
    while let Some(batch) = prefetcher.next() {
        let trees = match ctx.runtime.block_on(ctx.repo.load_trees(&batch)) {
            Ok(loaded) => loaded
                .into_iter()
                .map(|(id, tree)| {
                    if let Err(e) = &tree {
                        tracing::debug!("prefetching tree {}: {e}", id.short());
                    }
                    (id, tree.ok())
                })
                .collect(),
            Err(e) => {
                tracing::debug!("prefetching trees: {e}");
                batch.into_iter().map(|id| (id, None)).collect()
            }
        };
        prefetcher.loaded(trees);
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

    /// A tree of subdirectories with these ids (and one file).
    fn tree(ids: &[u8]) -> Arc<Tree> {
        let mut nodes: Vec<Node> = ids.iter().map(|&i| dir(&format!("{i:03}"), i)).collect();
        nodes.push(Node::new(b"zz-file".to_vec(), NodeKind::File));
        Arc::new(Tree { nodes })
    }

    fn ids(batch: &[Id]) -> Vec<u8> {
        batch.iter().map(|id| id.as_bytes()[0]).collect()
    }

    fn pending(p: &Prefetcher) -> Vec<(u8, bool)> {
        let state = p.lock();
        state
            .pending
            .iter()
            .rev()
            .map(|r| (r.id.as_bytes()[0], r.feed))
            .collect()
    }

    #[test]
    fn trees_are_requested_depth_first_as_the_walker_will_want_them() {
        let p = Prefetcher::default();
        let outer: Vec<u8> = (1..=BATCH as u8 + 2).collect();
        p.enter(&tree(&outer));
        let batch = p.next().unwrap();
        assert_eq!(ids(&batch), (1..=BATCH as u8).collect::<Vec<_>>());
        // Loaded: 1 has subdirectories 30 and 31, 2 has 40; the rest none.
        p.loaded(
            batch
                .iter()
                .map(|id| {
                    let sub: &[u8] = match id.as_bytes()[0] {
                        1 => &[30, 31],
                        2 => &[40],
                        _ => &[],
                    };
                    (*id, Some(tree(sub)))
                })
                .collect(),
        );
        // The grandchildren, first child's first, before the rest of the children, each
        // wanted with its own subtrees.
        assert_eq!(
            pending(&p),
            vec![
                (30, true),
                (31, true),
                (40, true),
                (BATCH as u8 + 1, true),
                (BATCH as u8 + 2, true)
            ]
        );
        let batch = p.next().unwrap();
        assert_eq!(ids(&batch)[..3], [30, 31, 40]);
        p.loaded(vec![
            (Id([30; 32]), Some(tree(&[50]))),
            (Id([31; 32]), Some(tree(&[]))),
            (Id([40; 32]), Some(tree(&[60]))),
        ]);
        // Depth first: 30's subtree comes before 40's, and both before 1's later siblings.
        assert_eq!(pending(&p)[..2], [(50, true), (60, true)]);
        // The walker enters 1: its tree is there, and nothing is requested twice.
        let one = p.take(&Id([1; 32])).unwrap();
        assert_eq!(one.nodes.len(), 3);
        p.enter(&one);
        let waiting = pending(&p);
        assert_eq!(waiting.iter().filter(|&&(i, _)| i == 50).count(), 1);
        assert!(!waiting.iter().any(|&(i, _)| i == 30 || i == 31));
    }

    #[test]
    fn a_tree_being_loaded_is_waited_for_and_one_still_pending_is_withdrawn() {
        let p = Prefetcher::default();
        p.enter(&tree(&[1, 2, 3]));
        assert_eq!(p.take(&Id([1; 32])), None);
        assert_eq!(p.take(&Id([2; 32])), None);
        assert_eq!(ids(&p.next().unwrap()), vec![3]);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| p.take(&Id([3; 32])));
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(
                !waiter.is_finished(),
                "take returned while the tree was loading"
            );
            p.loaded(vec![(Id([3; 32]), Some(tree(&[])))]);
            assert!(waiter.join().unwrap().is_some());
        });
        assert!(p.lock().ready.is_empty());
    }

    #[test]
    fn leaving_a_directory_drops_the_trees_of_subdirectories_not_entered() {
        let p = Prefetcher::default();
        let parent = tree(&[1, 2]);
        p.enter(&parent);
        let batch = p.next().unwrap();
        p.loaded(vec![
            (batch[0], Some(tree(&[10]))),
            (batch[1], Some(tree(&[20, 21]))),
        ]);
        let batch = p.next().unwrap();
        assert_eq!(ids(&batch), vec![10, 20, 21]);
        p.loaded(vec![
            (batch[0], Some(tree(&[]))),
            (batch[1], Some(tree(&[30]))),
        ]);
        // Depth first: 20's subtree 30 loads too, and requests its own, 40.
        let batch = p.next().unwrap();
        assert_eq!(ids(&batch), vec![30]);
        p.loaded(vec![(batch[0], Some(tree(&[40])))]);
        assert_eq!(pending(&p), vec![(40, true)]);
        // 21 failed to load; the walker entered 1 and 10, then left: 2 was deleted, and
        // everything loaded or requested below it goes.
        assert!(p.take(&Id([1; 32])).is_some());
        assert!(p.take(&Id([10; 32])).is_some());
        p.leave(&parent);
        let state = p.lock();
        assert!(state.ready.is_empty(), "{:?}", state.ready.keys());
        assert_eq!(state.ready_nodes, 0);
        assert!(state.pending.is_empty());
    }

    #[test]
    fn beyond_the_bound_only_the_entered_directorys_subtrees_are_requested() {
        let p = Prefetcher::default();
        p.lock().ready_nodes = MAX_READY_NODES;
        p.enter(&tree(&[1]));
        let batch = p.next().unwrap();
        p.loaded(vec![(batch[0], Some(tree(&[2])))]);
        assert!(p.lock().pending.is_empty());
    }

    #[test]
    fn the_oldest_requests_drop_off_beyond_the_bound() {
        let p = Prefetcher::default();
        let id = |i: usize| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Id(bytes)
        };
        let nodes = (0..MAX_PENDING + 10)
            .map(|i| {
                let mut node = Node::new(format!("{i:05}").into_bytes(), NodeKind::Dir);
                node.subtree = Some(id(i));
                node
            })
            .collect();
        p.enter(&Tree { nodes });
        let state = p.lock();
        assert_eq!(state.pending.len(), MAX_PENDING);
        // The first child is still on top, the last ones dropped off.
        assert_eq!(state.pending.last().map(|r| r.id), Some(id(0)));
        assert_eq!(
            state.pending.first().map(|r| r.id),
            Some(id(MAX_PENDING - 1))
        );
    }

    #[test]
    fn the_end_of_the_thread_wakes_a_waiting_walker() {
        let p = Prefetcher::default();
        let id = Id([7; 32]);
        p.enter(&tree(&[7]));
        assert_eq!(p.next(), Some(vec![id]));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| p.take(&id));
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!waiter.is_finished());
            p.ended();
            assert_eq!(waiter.join().unwrap(), None);
        });
        assert_eq!(p.next(), None);
    }

    #[test]
    fn leaving_drops_requests_still_waiting_or_loading_for_directories_not_entered() {
        let p = Prefetcher::default();
        let parent = tree(&[1, 2, 3]);
        // The walker entered 1 and took it; 2 is loading, 3 still waits.
        {
            let mut state = p.lock();
            state.loading = vec![Request {
                id: Id([2; 32]),
                feed: true,
            }];
            state.pending = vec![Request {
                id: Id([3; 32]),
                feed: true,
            }];
        }
        p.leave(&parent);
        assert!(p.lock().pending.is_empty());
        p.loaded(vec![(Id([2; 32]), Some(tree(&[20])))]);
        let state = p.lock();
        assert!(
            state.ready.is_empty(),
            "a tree loaded after its parent was left is dropped"
        );
        assert!(
            state.pending.is_empty(),
            "and its subtrees are not requested"
        );
        assert!(state.discard.is_empty() && state.feed.is_empty());
    }

    #[test]
    fn beyond_the_hard_bound_loaded_trees_are_not_held() {
        let p = Prefetcher::default();
        p.enter(&tree(&[1]));
        let batch = p.next().unwrap();
        p.lock().ready_nodes = HELD_NODES;
        p.loaded(vec![(batch[0], Some(tree(&[2])))]);
        assert!(p.lock().ready.is_empty());
        assert_eq!(p.take(&Id([1; 32])), None);
    }
}
