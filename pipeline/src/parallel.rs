//! An ordered parallel map: items from a reader thread are processed by `threads` workers
//! and handed to the consumer in input order, with a bounded number in flight.
//!
//! Used by offline preprocessing (read -> tokenize -> write shards in order). A worker's
//! panic becomes [`PipelineError::WorkerPanicked`]; the first error stops everything and is
//! returned; no thread outlives the call.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crossbeam_channel::bounded;

use crate::error::{PipelineError, Result};

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
    mut consume: C,
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

        let reader_results = result_tx.clone();
        let reader_name = format!("{name}-reader");
        let spawn_err = |source| PipelineError::Io {
            path: format!("<thread {name}>").into(),
            source,
        };
        std::thread::Builder::new()
            .name(reader_name.clone())
            .spawn_scoped(scope, move || {
                let mut seq = 0u64;
                let mut input = input;
                loop {
                    if slot_rx.recv().is_err() {
                        return;
                    }
                    // A panic while reading becomes an error in the stream, in order.
                    let item = match catch_unwind(AssertUnwindSafe(|| input.next())) {
                        Ok(Some(item)) => item,
                        Ok(None) => return,
                        Err(payload) => Err(PipelineError::WorkerPanicked {
                            thread: reader_name.clone(),
                            message: panic_message(payload.as_ref()),
                        }),
                    };
                    match item {
                        Ok(value) => {
                            if work_tx.send((seq, value)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = reader_results.send((seq, Err(e)));
                            return;
                        }
                    }
                    seq += 1;
                }
            })
            .map_err(spawn_err)?;
        for i in 0..threads {
            let work_rx = work_rx.clone();
            let result_tx = result_tx.clone();
            let map = &map;
            let thread_name = format!("{name}-worker-{i}");
            let label = thread_name.clone();
            std::thread::Builder::new()
                .name(thread_name)
                .spawn_scoped(scope, move || {
                    while let Ok((seq, value)) = work_rx.recv() {
                        let result = catch_unwind(AssertUnwindSafe(|| map(value))).unwrap_or_else(
                            |payload| {
                                Err(PipelineError::WorkerPanicked {
                                    thread: label.clone(),
                                    message: panic_message(payload.as_ref()),
                                })
                            },
                        );
                        if result_tx.send((seq, result)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(spawn_err)?;
        }
        drop(work_rx);
        drop(result_tx);

        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        for (seq, result) in result_rx.iter() {
            pending.insert(seq, result);
            while let Some(result) = pending.remove(&next) {
                next += 1;
                consume(result?)?;
                let _ = slot_tx.send(());
            }
        }
        match pending.into_iter().next() {
            // Results arrived past a gap: a thread died without reporting.
            Some((seq, _)) => Err(PipelineError::WorkerExited {
                thread: format!("{name} (item {next} never arrived, {seq} did)"),
            }),
            None => Ok(()),
        }
    })
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
