//! Rounds of keys through rank 0's TCPStore: the rendezvous, `all_gather_bytes` for both
//! backends, and every operation of the Store backend.
//!
//! Round `s` of rank `r` is the key `{prefix}/{s}/{r}` (a chunk count; the value is in
//! chunks `{prefix}/{s}/{r}/{i}` of at most 4 MiB). Once a rank has seen every rank's
//! key of round `s`, every rank has finished round `s - 1` (each sets its round-`s` key only
//! after), so it deletes its own key of round `s - 1`: the store holds at most two rounds.
//! On drop every rank sets `{prefix}/fin/{r}` and rank 0 waits for them (bounded by the
//! timeout) before its server goes, so no rank loses the store while reading the last round.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use super::ffi::Store;
use super::DistEnv;
use crate::error::{Result, TrainError};

/// The largest value one key holds: the TCPStore's libuv server refuses payloads over
/// 8 MiB, so a round's value is stored as chunks `{key}/{i}`, then `{key}` = their count.
const CHUNK_BYTES: usize = 4 << 20;

/// One rank's side of the key rounds.
pub(crate) struct Exchange {
    pub(crate) store: Store,
    pub(crate) rank: usize,
    pub(crate) world_size: usize,
    /// `MASTER_ADDR:MASTER_PORT` (the real port when a free one was picked).
    pub(crate) address: String,
    pub(crate) timeout: Duration,
    prefix: &'static str,
    round: Cell<u64>,
    /// This rank's key (and its chunk count) of the current round.
    current: RefCell<Option<(String, usize)>>,
    /// This rank's key of the last finished round, deleted once the next round completes.
    previous: RefCell<Option<(String, usize)>>,
    /// Set by any failure: drop then skips the closing handshake.
    pub(crate) failed: Cell<bool>,
}

impl Exchange {
    /// Serves (rank 0) or reaches the store, then meets every rank: each says its world
    /// size and backend, which must agree.
    pub(crate) fn connect(
        env: &DistEnv,
        timeout: Duration,
        prefix: &'static str,
        backend: &str,
    ) -> Result<Self> {
        let (rank, world_size) = (env.rank, env.world_size);
        if env.master_port == 0 && world_size > 1 {
            return Err(dist(format!(
                "rank {rank}: MASTER_PORT 0 (a free port) only works for world size 1"
            )));
        }
        let seconds = timeout.as_secs_f64();
        let store = Store::connect(
            &env.master_addr,
            env.master_port,
            rank == 0,
            world_size,
            timeout,
        )
        .map_err(|e| {
            let at = format!("{}:{}", env.master_addr, env.master_port);
            dist(if rank == 0 {
                format!("rank 0: cannot serve the TCPStore on {at} (MASTER_ADDR:MASTER_PORT): {e}")
            } else {
                format!(
                    "rank {rank}: cannot reach rank 0's TCPStore at {at} \
                     (MASTER_ADDR:MASTER_PORT) within the timeout of {seconds}s: {e}"
                )
            })
        })?;
        let port = if rank == 0 {
            store.port()
        } else {
            env.master_port
        };
        let exchange = Self {
            store,
            rank,
            world_size,
            address: format!("{}:{port}", env.master_addr),
            timeout,
            prefix,
            round: Cell::new(0),
            current: RefCell::new(None),
            previous: RefCell::new(None),
            failed: Cell::new(false),
        };
        let mine = format!("world_size={world_size} backend={backend}");
        let all = exchange.all_gather(mine.as_bytes())?;
        for (peer, theirs) in all.iter().enumerate() {
            if theirs != mine.as_bytes() {
                return Err(exchange.fail(format!(
                    "rank {rank} ({mine}) and rank {peer} ({}) disagree: launch every rank \
                     with the same world size and backend",
                    String::from_utf8_lossy(theirs)
                )));
            }
        }
        Ok(exchange)
    }

    /// Marks the exchange failed and builds the error.
    pub(crate) fn fail(&self, reason: String) -> TrainError {
        self.failed.set(true);
        dist(reason)
    }

    fn key(&self, round: u64, rank: usize) -> String {
        format!("{}/{round}/{rank}", self.prefix)
    }

    /// Starts a round: stores `value` as this rank's key of it; returns the round.
    pub(crate) fn begin(&self, what: &str, value: &[u8]) -> Result<u64> {
        let round = self.round.get() + 1;
        self.round.set(round);
        let key = self.key(round, self.rank);
        let set = |k: &str, v: &[u8]| {
            self.store.set(k, v).map_err(|e| {
                self.fail(format!(
                    "rank {}: {what}: setting {k} in the TCPStore at {} failed (is rank 0 \
                     alive?): {e}",
                    self.rank, self.address
                ))
            })
        };
        let chunks = value.chunks(CHUNK_BYTES).count();
        for (i, chunk) in value.chunks(CHUNK_BYTES).enumerate() {
            set(&format!("{key}/{i}"), chunk)?;
        }
        // The count last: a rank that sees it finds every chunk there.
        set(&key, &(chunks as u64).to_le_bytes())?;
        *self.current.borrow_mut() = Some((key, chunks));
        Ok(round)
    }

    fn peer_error(&self, what: &str, key: &str, peer: usize, e: &str) -> TrainError {
        self.fail(format!(
            "rank {}: {what}: no {key} from rank {peer} at the TCPStore {} within the \
             timeout of {}s (did rank {peer} exit or hang? is rank 0 alive?): {e}",
            self.rank,
            self.address,
            self.timeout.as_secs_f64()
        ))
    }

    /// Waits for and reads `peer`'s value of `round`.
    pub(crate) fn read(&self, what: &str, round: u64, peer: usize) -> Result<Vec<u8>> {
        let key = self.key(round, peer);
        let get = |k: &str| {
            self.store
                .get(k)
                .map_err(|e| self.peer_error(what, k, peer, &e))
        };
        let header = get(&key)?;
        let chunks = <[u8; 8]>::try_from(header.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| {
                self.fail(format!(
                    "rank {}: {what}: {key} from rank {peer} is not a chunk count: is another \
                     job using the TCPStore at {}?",
                    self.rank, self.address
                ))
            })?;
        let mut value = Vec::new();
        for i in 0..chunks {
            value.extend_from_slice(get(&format!("{key}/{i}"))?.as_slice());
        }
        Ok(value)
    }

    /// Waits for every rank's key of `round`, then ends it (see the module docs).
    pub(crate) fn finish(&self, what: &str, round: u64) -> Result<()> {
        for peer in (0..self.world_size).filter(|&p| p != self.rank) {
            let key = self.key(round, peer);
            self.store
                .wait(&key)
                .map_err(|e| self.peer_error(what, &key, peer, &e))?;
        }
        let current = self.current.borrow_mut().take();
        if let Some((key, chunks)) = self.previous.replace(current) {
            let keys = (0..chunks)
                .map(|i| format!("{key}/{i}"))
                .chain([key.clone()]);
            for k in keys {
                self.store.delete(&k).map_err(|e| {
                    self.fail(format!(
                        "rank {}: {what}: deleting {k} in the TCPStore at {} failed: {e}",
                        self.rank, self.address
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// Every rank's bytes, in rank order.
    pub(crate) fn all_gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let what = "all_gather_bytes";
        let round = self.begin(what, bytes)?;
        let mut all = Vec::with_capacity(self.world_size);
        for peer in 0..self.world_size {
            if peer == self.rank {
                all.push(bytes.to_vec());
            } else {
                all.push(self.read(what, round, peer)?);
            }
        }
        self.finish(what, round)?;
        Ok(all)
    }

    /// Every rank reaches this point before any leaves it.
    pub(crate) fn barrier(&self) -> Result<()> {
        let round = self.begin("barrier", &[])?;
        self.finish("barrier", round)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.failed.get() {
            return;
        }
        let fin = |rank: usize| format!("{}/fin/{rank}", self.prefix);
        if self.rank != 0 {
            // Best effort: rank 0 stops waiting after the timeout anyway.
            // Nothing to delete: `previous` is the last round, which others may still read.
            let _ = self.store.set(&fin(self.rank), &[]);
            return;
        }
        for peer in 1..self.world_size {
            if let Err(e) = self.store.wait(&fin(peer)) {
                tracing::warn!(
                    "rank 0: rank {peer} did not close the collective within {}s; closing the \
                     TCPStore at {} anyway: {e}",
                    self.timeout.as_secs_f64(),
                    self.address
                );
                break;
            }
        }
    }
}

/// A [`TrainError::Dist`].
pub(crate) fn dist(reason: String) -> TrainError {
    TrainError::Dist { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_round_leaves_only_its_own_chunked_keys_in_the_store() {
        let ex =
            Exchange::connect(&DistEnv::single(), Duration::from_secs(10), "t", "store").unwrap();
        let value: Vec<u8> = (0..(2 * CHUNK_BYTES + 5))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut counts = Vec::new();
        for round in 0..6 {
            let all = ex.all_gather(&value[..value.len() - round]).unwrap();
            assert_eq!(all, vec![value[..value.len() - round].to_vec()]);
            counts.push(ex.store.num_keys().unwrap());
        }
        // After a round only its own keys remain (a count and its chunks): 3 chunks, then
        // 2 for the last value, exactly two chunks long.
        assert_eq!(counts, [4, 4, 4, 4, 4, 3]);
        ex.barrier().unwrap();
        assert_eq!(ex.all_gather(&[]).unwrap(), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn port_zero_needs_world_size_one() {
        let env = DistEnv {
            world_size: 2,
            ..DistEnv::single()
        };
        let err = Exchange::connect(&env, Duration::from_secs(1), "t", "store")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("MASTER_PORT 0"), "{err}");
    }
}
