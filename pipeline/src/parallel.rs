//! An ordered parallel map: items from a reader thread are processed by `threads` workers
//! and handed to the consumer in input order, with a bounded number in flight.
//!
//! Used by offline preprocessing (read -> tokenize -> write shards in order). A worker's
//! panic becomes [`PipelineError::WorkerPanicked`]; the first error stops everything and is
//! returned; no thread outlives the call.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::{PipelineError, Result};

/// `threads`, or the available parallelism when it is 0.
pub fn thread_count(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Items in flight per worker.
const IN_FLIGHT_PER_THREAD: usize = 4;

/// The message of a panic payload (`&str` or `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string())
}

/// Maps `input` through `map` on `threads` named worker threads and feeds the results to
/// `consume` in input order. Returns the first error from the input, a worker or the
/// consumer.
pub fn ordered_map<I, T, U, F, C>(
    input: I,
    threads: usize,
    name: &str,
    map: F,
    consume: C,
) -> Result<()>
where
    I: Iterator<Item = Result<T>> + Send,
    T: Send,
    U: Send,
    F: Fn(T) -> Result<U> + Sync,
    C: FnMut(U) -> Result<()>,
{
    let threads = threads.max(1);
    let capacity = threads * IN_FLIGHT_PER_THREAD;
    std::thread::scope(|scope| -> Result<()> {
        let (slot_tx, slot_rx) = bounded::<()>(capacity);
        for _ in 0..capacity {
            let _ = slot_tx.send(());
        }
        let (work_tx, work_rx) = bounded::<(u64, T)>(capacity);
        let (result_tx, result_rx) = bounded::<(u64, Result<U>)>(capacity);
        let feed = Feed {
            slots: slot_rx,
            work: work_tx,
            errors: result_tx.clone(),
        };
        spawn(scope, format!("{name}-reader"), move |thread| {
            feed.run(input, thread)
        })?;
        for i in 0..threads {
            let (work_rx, result_tx, map) = (work_rx.clone(), result_tx.clone(), &map);
            spawn(scope, format!("{name}-worker-{i}"), move |thread| {
                while let Ok((seq, value)) = work_rx.recv() {
                    let result = catch_unwind(AssertUnwindSafe(|| map(value)))
                        .unwrap_or_else(|payload| Err(panicked(thread, payload.as_ref())));
                    if result_tx.send((seq, result)).is_err() {
                        return;
                    }
                }
            })?;
        }
        drop(work_rx);
        drop(result_tx);
        consume_in_order(name, &result_rx, &slot_tx, consume)
    })
}

/// The error a panic with `payload` on `thread` becomes.
fn panicked(thread: &str, payload: &(dyn std::any::Any + Send)) -> PipelineError {
    PipelineError::WorkerPanicked {
        thread: thread.to_string(),
        message: panic_message(payload),
    }
}

/// Spawns a named scoped thread running `f(name)`.
fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: String,
    f: impl FnOnce(&str) + Send + 'scope,
) -> Result<()> {
    let label = name.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn_scoped(scope, move || f(&label))
        .map(|_| ())
        .map_err(|source| PipelineError::Io {
            path: format!("<thread {name}>").into(),
            source,
        })
}

/// The reader thread's ends: it takes a slot per item, sends items to the workers and its
/// own error (in order) to the consumer.
struct Feed<T, U> {
    slots: Receiver<()>,
    work: Sender<(u64, T)>,
    errors: Sender<(u64, Result<U>)>,
}

impl<T, U> Feed<T, U> {
    /// Numbers and sends the items of `input` until it ends, fails or the consumer stops.
    fn run(self, mut input: impl Iterator<Item = Result<T>>, thread: &str) {
        let mut seq = 0u64;
        loop {
            if self.slots.recv().is_err() {
                return;
            }
            // A panic while reading becomes an error in the stream, in order.
            let item = match catch_unwind(AssertUnwindSafe(|| input.next())) {
                Ok(Some(item)) => item,
                Ok(None) => return,
                Err(payload) => Err(panicked(thread, payload.as_ref())),
            };
            match item {
                Ok(value) => {
                    if self.work.send((seq, value)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = self.errors.send((seq, Err(e)));
                    return;
                }
            }
            seq += 1;
        }
    }
}

/// Hands the results to `consume` in input order, returning a slot for each.
fn consume_in_order<U>(
    name: &str,
    results: &Receiver<(u64, Result<U>)>,
    slots: &Sender<()>,
    mut consume: impl FnMut(U) -> Result<()>,
) -> Result<()> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for (seq, result) in results.iter() {
        pending.insert(seq, result);
        while let Some(result) = pending.remove(&next) {
            next += 1;
            consume(result?)?;
            let _ = slots.send(());
        }
    }
    match pending.into_iter().next() {
        // Results arrived past a gap: a thread died without reporting.
        Some((seq, _)) => Err(PipelineError::WorkerExited {
            thread: format!("{name} (item {next} never arrived, {seq} did)"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_input_order_for_any_thread_count() {
        for threads in [1, 2, 8] {
            let mut out = Vec::new();
            ordered_map(
                (0..500u64).map(Ok),
                threads,
                "t",
                |x| {
                    if x % 7 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    Ok(x * 2)
                },
                |y| {
                    out.push(y);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(
                out,
                (0..500u64).map(|x| x * 2).collect::<Vec<_>>(),
                "{threads} threads"
            );
        }
    }

    #[test]
    fn a_worker_panic_is_an_error_with_its_message() {
        let err = ordered_map(
            (0..50u64).map(Ok),
            3,
            "t",
            |x| {
                if x == 17 {
                    panic!("bad item 17");
                }
                Ok(x)
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PipelineError::WorkerPanicked { message, .. } if message == "bad item 17"),
            "{err}"
        );
    }

    #[test]
    fn an_input_error_arrives_after_the_items_before_it() {
        let mut seen = Vec::new();
        let input = (0..10u64).map(|x| {
            if x == 6 {
                Err(PipelineError::NoFiles {
                    pattern: "x".into(),
                })
            } else {
                Ok(x)
            }
        });
        let err = ordered_map(input, 2, "t", Ok, |x| {
            seen.push(x);
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, PipelineError::NoFiles { .. }));
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_consumer_error_stops_the_workers() {
        let err = ordered_map((0..100_000u64).map(Ok), 2, "t", Ok, |x| {
            if x == 10 {
                Err(PipelineError::NoFiles {
                    pattern: "stop".into(),
                })
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(err, PipelineError::NoFiles { .. }));
    }
}
