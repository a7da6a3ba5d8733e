//! Where each worker fetches a job binary from (Spark's TorrentBroadcast shape): the
//! driver serves the first fetchers, and every worker that has the binary, or is fetching
//! it, serves later ones, each source at most `fanout` fetches at once, so no holder serves
//! everyone. Complete holders are preferred, then the driver, then workers still fetching
//! (their service answers once they have it); the driver is every fetcher's last resort.
//!
//! A worker still fetching serves only once it has the whole binary, so each hop away from
//! a complete copy adds a whole fetch: fetchers are sent to the fetching workers fewest
//! hops away first (filling each up to the fanout), which keeps the tree shallow: with a
//! fanout of 4, 16 workers are 2 hops from the driver, not 4.
//!
//! Pure bookkeeping: the driver calls [`BinaryPlacement::sources`] as it launches an
//! attempt, [`BinaryPlacement::fetched`] when the worker reports the binary verified, and
//! [`BinaryPlacement::forget_worker`] when a worker is lost, [`BinaryPlacement::leaving`]
//! when it starts draining (it exits once released: no fetcher is sent its way).

use std::collections::{HashMap, HashSet};

use crate::ids::WorkerId;

/// A source of a binary: a worker, or the driver.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The driver's own store.
    Driver,
    /// A worker.
    Worker(WorkerId),
}

/// Who holds one binary, and who serves whom.
#[derive(Debug, Default)]
struct Holders {
    /// Workers with the binary verified.
    complete: Vec<WorkerId>,
    /// Workers fetching it, with the source they were sent to.
    fetching: HashMap<WorkerId, Source>,
    /// Of each worker fetching it, how many whole fetches lie between a complete copy and
    /// its own: 1 from the driver or a complete holder, one more than its source's from a
    /// worker still fetching.
    hops: HashMap<WorkerId, u32>,
    /// Fetches each source is serving now.
    serving: HashMap<Source, usize>,
}

impl Holders {
    fn load(&self, source: &Source) -> usize {
        self.serving.get(source).copied().unwrap_or(0)
    }

    fn hops(&self, worker: &WorkerId) -> u32 {
        self.hops.get(worker).copied().unwrap_or(0)
    }

    /// `worker` fetches no more (it has the binary, or is gone): its source is free again.
    fn end_fetch(&mut self, worker: &WorkerId) {
        self.hops.remove(worker);
        if let Some(source) = self.fetching.remove(worker) {
            self.release(&source);
        }
    }

    fn release(&mut self, source: &Source) {
        if let Some(n) = self.serving.get_mut(source) {
            *n = n.saturating_sub(1);
        }
    }
}

/// The holders of every binary being distributed.
#[derive(Debug)]
pub struct BinaryPlacement {
    fanout: usize,
    binaries: HashMap<String, Holders>,
    /// Draining workers: never sources, whatever they fetch meanwhile.
    leaving: HashSet<WorkerId>,
}

impl BinaryPlacement {
    /// Each source serves at most `fanout` fetches at once (at least 1).
    pub fn new(fanout: usize) -> Self {
        BinaryPlacement { fanout: fanout.max(1), binaries: HashMap::new(), leaving: HashSet::new() }
    }

    /// The workers `worker` should fetch `digest` from, in order (empty: from the driver);
    /// counts the fetch against the first. Nothing when it has or is fetching the binary.
    pub fn sources(&mut self, digest: &str, worker: &WorkerId) -> Vec<WorkerId> {
        let (fanout, leaving) = (self.fanout, &self.leaving);
        let holders = self.binaries.entry(digest.to_owned()).or_default();
        if holders.complete.contains(worker) || holders.fetching.contains_key(worker) {
            return Vec::new();
        }
        let free = |holders: &Holders, w: &WorkerId| {
            holders.load(&Source::Worker(w.clone())) < fanout && !leaving.contains(w)
        };
        let mut complete: Vec<WorkerId> =
            holders.complete.iter().filter(|w| free(holders, w)).cloned().collect();
        complete.sort_by_key(|w| holders.load(&Source::Worker(w.clone())));
        let mut fetching: Vec<WorkerId> =
            holders.fetching.keys().filter(|w| free(holders, w)).cloned().collect();
        fetching.sort_by_key(|w| (holders.hops(w), holders.load(&Source::Worker(w.clone())), w.to_string()));
        let driver_free = holders.load(&Source::Driver) < fanout;
        // A complete holder, else the driver while it has room, else a worker still fetching.
        let order: Vec<WorkerId> = match (complete.is_empty(), driver_free) {
            (false, _) => complete.into_iter().chain(fetching).collect(),
            (true, true) => Vec::new(),
            (true, false) => fetching,
        };
        let first = order.first().map_or(Source::Driver, |w| Source::Worker(w.clone()));
        let hops = 1 + order.first().map_or(0, |w| holders.hops(w));
        *holders.serving.entry(first.clone()).or_default() += 1;
        holders.fetching.insert(worker.clone(), first);
        holders.hops.insert(worker.clone(), hops);
        // A second peer to fall back on before the driver.
        order.into_iter().take(2).collect()
    }

    /// `worker` has `digest`, verified: it serves others from now on (unless it is leaving).
    pub fn fetched(&mut self, digest: &str, worker: &WorkerId) {
        let holders = self.binaries.entry(digest.to_owned()).or_default();
        holders.end_fetch(worker);
        if !holders.complete.contains(worker) && !self.leaving.contains(worker) {
            holders.complete.push(worker.clone());
        }
    }

    /// `worker` is draining: from now on it is no one's source (it exits once released);
    /// a fetch of its own in progress still counts against its source until it ends.
    pub fn leaving(&mut self, worker: &WorkerId) {
        for holders in self.binaries.values_mut() {
            holders.complete.retain(|w| w != worker);
        }
        self.leaving.insert(worker.clone());
    }

    /// `worker` is gone: it holds nothing, and what it was fetching frees its source.
    pub fn forget_worker(&mut self, worker: &WorkerId) {
        self.leaving.remove(worker);
        let gone = Source::Worker(worker.clone());
        for holders in self.binaries.values_mut() {
            holders.complete.retain(|w| w != worker);
            holders.end_fetch(worker);
            holders.serving.remove(&gone);
        }
    }

    /// Forgets `digest` (its binary was evicted or no job uses it).
    pub fn forget_binary(&mut self, digest: &str) {
        self.binaries.remove(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(n: u32) -> WorkerId {
        WorkerId(format!("w{n}"))
    }

    #[test]
    fn the_driver_serves_the_first_fetchers_then_holders_serve_the_rest() {
        let mut placement = BinaryPlacement::new(2);
        assert!(placement.sources("d", &worker(1)).is_empty(), "the driver serves the first");
        assert!(placement.sources("d", &worker(2)).is_empty(), "and the second");
        // The driver is full: workers still fetching serve, each at most two at once.
        let third = placement.sources("d", &worker(3));
        assert_eq!(third.first(), Some(&worker(1)));
        let fourth = placement.sources("d", &worker(4));
        assert_eq!(fourth.first(), Some(&worker(2)), "spread over the holders: {fourth:?}");
        assert!(placement.sources("d", &worker(1)).is_empty(), "a fetching worker is not sent twice");

        placement.fetched("d", &worker(1));
        let fifth = placement.sources("d", &worker(5));
        assert_eq!(fifth.first(), Some(&worker(1)), "a complete holder comes first");
    }

    #[test]
    fn no_source_serves_more_than_the_fanout_at_once() {
        let mut placement = BinaryPlacement::new(3);
        let mut served: HashMap<Option<WorkerId>, usize> = HashMap::new();
        for n in 0..16 {
            let sources = placement.sources("d", &worker(n));
            *served.entry(sources.first().cloned()).or_default() += 1;
        }
        assert!(served.values().all(|&n| n <= 3), "{served:?}");
        assert_eq!(served.values().sum::<usize>(), 16);
    }

    #[test]
    fn fetchers_go_to_the_workers_fewest_hops_from_a_complete_copy_first() {
        let mut placement = BinaryPlacement::new(4);
        let mut hops: HashMap<WorkerId, u32> = HashMap::new();
        for n in 0..16 {
            let first = placement.sources("d", &worker(n)).first().cloned();
            let own = 1 + first.map_or(0, |source| hops[&source]);
            hops.insert(worker(n), own);
        }
        let deepest = hops.values().max().unwrap();
        assert_eq!(*deepest, 2, "4 from the driver, 12 from those 4: {hops:?}");
    }

    #[test]
    fn a_draining_worker_is_no_ones_source() {
        let mut placement = BinaryPlacement::new(1);
        assert!(placement.sources("d", &worker(1)).is_empty());
        placement.fetched("d", &worker(1));
        assert!(placement.sources("e", &worker(1)).is_empty(), "worker 1 fetches another binary");
        placement.leaving(&worker(1));
        assert!(placement.sources("d", &worker(2)).is_empty(), "not sent to worker 1 for d");
        assert!(placement.sources("e", &worker(3)).is_empty(), "nor for e, which it is fetching");
        placement.fetched("e", &worker(1));
        let fourth = placement.sources("e", &worker(4));
        assert!(!fourth.contains(&worker(1)), "nor once it has e: {fourth:?}");
    }

    #[test]
    fn a_lost_worker_serves_no_more_and_frees_its_source() {
        let mut placement = BinaryPlacement::new(1);
        assert!(placement.sources("d", &worker(1)).is_empty());
        assert_eq!(placement.sources("d", &worker(2)), vec![worker(1)]);
        placement.forget_worker(&worker(1));
        // Worker 2 still counts against nobody; the driver has room again.
        assert!(placement.sources("d", &worker(3)).is_empty());
        placement.fetched("d", &worker(2));
        // Worker 2 first (it has it), worker 3 (still fetching) as the fallback peer.
        assert_eq!(placement.sources("d", &worker(4)).first(), Some(&worker(2)));
        placement.forget_binary("d");
        assert!(placement.sources("d", &worker(4)).is_empty(), "forgotten: from the driver again");
    }
}
